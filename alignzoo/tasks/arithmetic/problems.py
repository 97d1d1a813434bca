"""Seeded generator of arithmetic problems and their worked solutions, cut into disjoint splits.

A problem is ``a<op>b=`` (the prompt) with operands of 1 to ``max_digits`` digits (the number of digits is drawn
uniformly first, then the operand, so short and long operands are equally common) and ``op`` one of ``+ - *``;
subtraction may go negative. The completion is a worked solution that ends with the answer line of
``alignzoo.tasks.arithmetic.verifier`` (``#### <integer>``):

- ``+`` and ``-``: the result's sign and digits in reverse, least significant first (the order column arithmetic
  makes them in: each digit then depends on two operand digits at a fixed distance from ``+`` and ``=``, and the
  carry), then the answer line: ``47+85=`` -> ``231 #### 132``, ``3-85=`` -> ``-28 #### -82``. Answer-first
  solutions left a ~100k-parameter model at 2-5% accuracy on two-digit sums (the units digit came out wrong);
- ``*`` with a one-digit right operand: the result, then the answer line (``12*3=`` -> ``36 #### 36``); with
  more digits, the partial products of each digit of ``b`` (times its place value) and their sum:
  ``47*85=`` -> ``47*5=235, 47*80=3760, 235+3760=3995 #### 3995``.

Every problem appears in at most one split (they are drawn without replacement from the whole problem space);
the length-generalisation split has operands of exactly ``max_digits + length_extra_digits`` digits, so none
of its problems is seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Iterable

from alignzoo.tasks.arithmetic.verifier import render

OPS = "+-*"
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}{self.op}{self.b}="

    @property
    def answer(self) -> int:
        return _APPLY[self.op](self.a, self.b)

    @property
    def solution(self) -> str:
        """The worked solution (the completion after the prompt), ending with the answer line."""
        return f"{''.join(self.steps())}{render(self.answer)}"

    def steps(self) -> Iterable[str]:
        if self.op != "*":
            yield f"{'-' if self.answer < 0 else ''}{str(abs(self.answer))[::-1]} "
            return
        if self.b < 10:
            yield f"{self.answer} "
            return
        partials = [self.a * int(d) * 10 ** i for i, d in enumerate(reversed(str(self.b)))]
        for i, p in enumerate(partials):
            yield f"{self.a}*{int(str(self.b)[-1 - i]) * 10 ** i}={p}, "
        yield f"{'+'.join(map(str, partials))}={self.answer} "

    @property
    def text(self) -> str:
        """Prompt and solution: a pretraining document."""
        return self.prompt + self.solution


def operands_with(digits: int) -> range:
    """The non-negative integers with exactly ``digits`` digits (0 counts as one digit)."""
    return range(0, 10) if digits == 1 else range(10 ** (digits - 1), 10 ** digits)


def space_size(ops: str, min_digits: int, max_digits: int) -> int:
    """How many distinct problems the settings allow."""
    per_operand = sum(len(operands_with(d)) for d in range(min_digits, max_digits + 1))
    return len(ops) * per_operand ** 2


def draw(rng: Random, ops: str, min_digits: int, max_digits: int) -> Problem:
    digits = lambda: rng.randint(min_digits, max_digits)  # noqa: E731
    a, b = rng.choice(operands_with(digits())), rng.choice(operands_with(digits()))
    return Problem(a, rng.choice(ops), b)


def split_problems(sizes: dict[str, int], *, ops: str, min_digits: int, max_digits: int, seed: int
                   ) -> dict[str, list[Problem]]:
    """Disjoint splits of distinct problems, cut in the order of ``sizes`` from one seeded stream (so a split's
    problems do not change when a later split grows). Raises ValueError when the space is too small."""
    need, space = sum(sizes.values()), space_size(ops, min_digits, max_digits)
    if need > space:
        raise ValueError(f"the splits need {need} distinct problems but ops={ops!r} with {min_digits}-{max_digits} "
                         f"digits allow only {space}")
    rng, seen, out = Random(seed), set(), {}
    for name, size in sizes.items():
        part: list[Problem] = []
        while len(part) < size:
            p = draw(rng, ops, min_digits, max_digits)
            if p not in seen:
                seen.add(p)
                part.append(p)
        out[name] = part
    return out
