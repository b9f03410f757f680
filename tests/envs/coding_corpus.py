"""Snippets the coding env must run exactly as smolagents' own LocalPythonExecutor does.

Each case is a list of steps run in one episode (one interpreter), so multi-step cases check
that state persists.
"""

from __future__ import annotations

CORPUS: dict[str, list[str]] = {
    # Prints and final expressions.
    "print": ['print("hello")'],
    "print-several-args": ["print(1, 'two', 3.0, None, [4])"],
    "print-twice": ['print("a")\nprint("b")'],
    "expression-int": ["41 + 1"],
    "expression-str": ['"text"'],
    "expression-none": ["None"],
    "assignment-shows-nothing": ["x = 5"],
    "expression-after-print": ['print("first")\n[1, 2, 3]'],
    "expression-dict": ['{"a": 1, "b": [2, 3]}'],
    "unicode": ['print("héllo ✓")\n"ünïcødé"'],
    "f-string": ['name = "world"\nf"hello {name:>8}!"'],
    # Functions and classes.
    "function": ["def square(n):\n    return n * n\nprint(square(7))\nsquare(8)"],
    "recursion": ["def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\nfact(10)"],
    "closure": [
        "def make_adder(n):\n    def add(v):\n        return v + n\n    return add\n"
        "make_adder(3)(4)"
    ],
    "lambda-map": ["list(map(lambda v: v * 3, [1, 2]))"],
    "class": [
        "class Counter:\n    def __init__(self):\n        self.n = 0\n"
        "    def inc(self):\n        self.n += 1\n        return self.n\n"
        "c = Counter()\nc.inc()\nc.inc()"
    ],
    "class-repr": [
        "class P:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __repr__(self):\n        return f'P({self.x})'\nP(3)"
    ],
    "class-default-repr": ["class Plain:\n    pass\nPlain()"],
    # Control flow and comprehensions.
    "for-loop": ["total = 0\nfor i in range(10):\n    total += i\nprint(total)"],
    "while-break": ["n = 0\nwhile True:\n    n += 1\n    if n == 5:\n        break\nn"],
    "list-comprehension": ["[i * i for i in range(6) if i % 2 == 0]"],
    "dict-comprehension": ['{k: len(k) for k in ["a", "bb", "ccc"]}'],
    "set-comprehension": ['sorted({c for c in "hello"})'],
    "generator": ["sum(i for i in range(101))"],
    "swap": ["a, b = 1, 2\na, b = b, a\n(a, b)"],
    "try-except": ['try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    print("caught", e)'],
    # Allowed imports.
    "import-math": ["import math\nmath.sqrt(16)"],
    "from-collections": ['from collections import Counter\nCounter("abracadabra").most_common(2)'],
    "itertools": ["import itertools\nlist(itertools.permutations([1, 2, 3], 2))"],
    "json": ['import json\njson.dumps({"b": [1, 2], "a": None}, sort_keys=True)'],
    "re": ['import re\nre.findall(r"\\d+", "a1b22c333")'],
    "statistics": ["import statistics\nstatistics.mean([1, 2, 3, 4])"],
    "random-seeded": ["import random\nrandom.seed(3)\n[random.randint(1, 100) for _ in range(3)]"],
    "datetime": ["import datetime\ndatetime.date(2024, 2, 29).isoformat()"],
    "functools": ["from functools import reduce\nreduce(lambda a, b: a * b, [1, 2, 3, 4])"],
    # Forbidden imports and functions.
    "import-os": ["import os"],
    "import-subprocess": ["import subprocess"],
    "from-sys": ["from sys import argv"],
    "import-socket": ["import socket"],
    "open": ['open("/etc/passwd").read()'],
    "eval": ['eval("1 + 1")'],
    "dunder": ["(1).__class__"],
    # Exceptions of several types.
    "zero-division": ["1 / 0"],
    "key-error": ['{}["missing"]'],
    "index-error": ["[1][5]"],
    "type-error": ['"a" + 1'],
    "value-error": ['int("x")'],
    "raise": ['raise ValueError("bad value")'],
    "attribute-error": ["x = 1\nx.foo"],
    "name-error": ["undefined_name + 1"],
    "syntax-error": ["def broken(:\n    pass"],
    "assert": ['assert 1 == 2, "math is broken"'],
    "print-then-error": ['print("before")\n1 / 0'],
    "system-exit": ["raise SystemExit(3)"],
    # Several steps of one episode.
    "state-variable": ["x = 41", "print(x + 1)", "x += 1\nx"],
    "state-function": ["def greet(n):\n    return 'hi ' + n", "greet('bob')"],
    "state-import": ["import math", "math.floor(2.7)"],
    "state-class": ["class A:\n    v = 1", "A.v + 1"],
    "state-list": ["items = []", "items.append(1)\nitems.append(2)", "items"],
    "state-survives-error": ["y = 1", "1 / 0", "y"],
    "state-after-syntax-error": ['print("printed")', "x = (", "print('again')"],
}
