# Sample code with known problems, for the review crew (README: send pipeline:review).
import os
import subprocess

password = "hunter2"


def run(cmd):
    return subprocess.call(cmd, shell=True)


def calc(expr):
    return eval(input(expr))


def nested(a, b, c, d):
    if a:
        if b:
            for x in range(c):
                if x > d:
                    while x:
                        if x % 2:
                            x -= 1
                        elif x % 3:
                            x -= 2
                        elif x % 5:
                            x -= 4
                        elif x % 7 and d:
                            x -= 6
                        elif c or d:
                            x -= 1
                        else:
                            x -= 3
    return a
