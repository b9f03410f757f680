"""The coding env's default imports give the code no path to ``os``: the known gadgets, run by
the real interpreter with the default configuration, are all refused."""

# ruff: noqa: E501  (the gadgets read best one to a line)

from __future__ import annotations

import pytest

pytest.importorskip("smolagents")

from envs.coding_env.server.worker import Interpreter, WorkerConfig

GADGETS = {
    "attrgetter": "import operator, random\noperator.attrgetter('_os.open')(random)",
    "attrgetter spawnv": "import operator, random\noperator.attrgetter('_os.spawnv')(random)",
    "methodcaller": "import operator, random\noperator.methodcaller('__getattribute__', '_os')(random)",
    "random._os": "import random\nrandom._os.open",
    "getattr chain": "import random\ngetattr(getattr(random, '_os'), 'system')",
    "getattr reduce": "import functools, random\nfunctools.reduce(getattr, ['_os', 'open'], random)",
    "sys through collections": "import collections\ncollections._sys.modules['os'].system",
    "subclasses walk": "().__class__.__bases__[0].__subclasses__()",
    "subclasses of type": "type.__subclasses__(type)",
    "mro walk": "[].__class__.__mro__[-1].__subclasses__()",
    "globals of a function": "def f():\n    pass\nf.__globals__['os']",
    "string formatter": "import string, random\nstring.Formatter().get_field('0._os.open', [random], {})",
    "typing eval": "import typing\nclass A:\n    x: \"__import__('os').name\"\ntyping.get_type_hints(A)",
}


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    return Interpreter(
        WorkerConfig(authorized_imports=None, max_output_bytes=65536, memory_limit_mb=None)
    )


@pytest.mark.parametrize("code", GADGETS.values(), ids=GADGETS.keys())
def test_a_gadget_is_refused(interpreter: Interpreter, code: str) -> None:
    reply = interpreter.run(code)
    assert reply.exit_code == 1, f"ran: {reply.stdout!r}"
    assert "posix" not in reply.stdout + reply.stderr, reply.stderr  # os.name was read
    assert "built-in function" not in reply.stdout and "<function" not in reply.stdout
