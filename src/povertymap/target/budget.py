"""The budget of a social program (:class:`Budget`) and what one beneficiary costs.

A targeting plan is a choice of whom to cover under a budget. Programs state their budget
in one of three ways, and each fixes what a unit or a household *costs*:

``share``
    a share of the population (``"30%"``): the plan may cover that many people;
``people`` / ``households``
    an absolute number of people or households (``"120000"``, ``"25000 households"``);
``money``
    an amount of money with a cost per person and/or per household
    (``"2000000 @ 25/person"``), e.g. a transfer plus delivery cost.

:meth:`Budget.capacity` turns the budget into a number in the cost measure, and
:meth:`Budget.unit_costs` gives the cost of covering each row of a table (a whole area for
geographic targeting, a household for household targeting). Nothing here looks at poverty.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from povertymap.errors import InputError
from povertymap.target._checks import finite_column, require_columns

__all__ = ["Budget", "BudgetLike"]

BudgetKind = Literal["share", "people", "households", "money"]

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
_SHARE = re.compile(rf"^({_NUMBER})\s*%$")
_COUNT = re.compile(rf"^({_NUMBER})\s*(people|persons|person|households|household|hh)?$")
_MONEY = re.compile(rf"^({_NUMBER})\s*@\s*({_NUMBER})\s*/\s*(person|people|household|hh)$")


@dataclass(frozen=True)
class Budget:
    """How much a program can cover.

    Parameters
    ----------
    kind:
        ``"share"`` (of the population), ``"people"``, ``"households"`` or ``"money"``.
    amount:
        The share in (0, 1], the number of people or households, or the money amount.
    cost_per_person, cost_per_household:
        Money budgets only: the cost of covering one person and/or one household (both
        may be given, e.g. a per-capita transfer plus a per-household delivery fee).
    """

    kind: BudgetKind
    amount: float
    cost_per_person: float = 0.0
    cost_per_household: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("share", "people", "households", "money"):
            raise InputError(
                f"unknown budget kind {self.kind!r}",
                fix="use 'share', 'people', 'households' or 'money'",
            )
        if not math.isfinite(self.amount) or self.amount <= 0:
            raise InputError(
                f"budget amount {self.amount!r} is not a positive number",
                fix="give a positive budget, e.g. '30%' or '120000'",
            )
        if self.kind == "share" and self.amount > 1:
            raise InputError(
                f"budget share {self.amount:.0%} is above 100% of the population",
                fix="give a share between 0% and 100%, e.g. '30%'",
            )
        costs = (self.cost_per_person, self.cost_per_household)
        if any(not math.isfinite(c) or c < 0 for c in costs):
            raise InputError(
                f"costs per person/household {costs} must be finite and >= 0",
                fix="give non-negative costs",
            )
        if self.kind == "money" and self.cost_per_person == 0 and self.cost_per_household == 0:
            raise InputError(
                f"money budget {self.amount:g} has no cost per person or per household",
                fix="say what one beneficiary costs, e.g. '2000000 @ 25/person'",
            )
        if self.kind != "money" and (self.cost_per_person or self.cost_per_household):
            raise InputError(
                f"a {self.kind} budget takes no cost per person/household",
                fix="use Budget.money(amount, cost_per_person=...) for money budgets",
            )

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def share(cls, share: float) -> Budget:
        """A share of the population, in (0, 1]."""
        return cls("share", float(share))

    @classmethod
    def people(cls, n: float) -> Budget:
        """An absolute number of people."""
        return cls("people", float(n))

    @classmethod
    def households(cls, n: float) -> Budget:
        """An absolute number of households."""
        return cls("households", float(n))

    @classmethod
    def money(
        cls, amount: float, *, cost_per_person: float = 0.0, cost_per_household: float = 0.0
    ) -> Budget:
        """An amount of money and what one person and/or household costs."""
        return cls("money", float(amount), float(cost_per_person), float(cost_per_household))

    @classmethod
    def parse(cls, value: BudgetLike) -> Budget:
        """Read a budget from text or a number.

        ``"30%"`` is a share of the population; ``"120000"`` or ``"120000 people"`` a number
        of people; ``"25000 households"`` (or ``"25000 hh"``) a number of households;
        ``"2000000 @ 25/person"`` (or ``@ 60/household``) money with its unit cost. A float
        in (0, 1] is a share, any other number a count of people. A Budget is returned as is.
        """
        if isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise InputError(f"budget {value!r} is not a number", fix="give e.g. '30%'")
        if isinstance(value, int | float | np.integer | np.floating):
            number = float(value)
            if isinstance(value, float | np.floating) and 0 < number <= 1:
                return cls.share(number)
            return cls.people(number)
        if not isinstance(value, str):
            raise InputError(
                f"budget {value!r} is neither text nor a number",
                fix="give e.g. '30%', '120000', '25000 households' or '2000000 @ 25/person'",
            )
        text = value.strip().lower().replace(",", "").replace("_", "")
        if m := _SHARE.match(text):
            return cls.share(float(m.group(1)) / 100.0)
        if m := _MONEY.match(text):
            amount, cost, per = float(m.group(1)), float(m.group(2)), m.group(3)
            if per in ("person", "people"):
                return cls.money(amount, cost_per_person=cost)
            return cls.money(amount, cost_per_household=cost)
        if m := _COUNT.match(text):
            n, what = float(m.group(1)), m.group(2)
            if what in ("households", "household", "hh"):
                return cls.households(n)
            return cls.people(n)
        raise InputError(
            f"cannot read budget {value!r}",
            fix="give e.g. '30%', '120000', '25000 households' or '2000000 @ 25/person'",
        )

    # -- arithmetic ---------------------------------------------------------------------

    @property
    def measure(self) -> str:
        """What :meth:`capacity` and :meth:`unit_costs` count: people, households or money."""
        return {"share": "people", "people": "people", "households": "households"}.get(
            self.kind, "money"
        )

    def describe(self) -> str:
        """The budget as text that :meth:`parse` reads back."""
        if self.kind == "share":
            return f"{self.amount * 100:g}%"
        if self.kind == "people":
            return f"{self.amount:g} people"
        if self.kind == "households":
            return f"{self.amount:g} households"
        parts = []
        if self.cost_per_person:
            parts.append(f"{self.cost_per_person:g}/person")
        if self.cost_per_household:
            parts.append(f"{self.cost_per_household:g}/household")
        return f"{self.amount:g} @ " + " + ".join(parts)

    def unit_costs(
        self,
        table: pd.DataFrame,
        *,
        people: str = "population",
        households: str = "households",
        what: str = "units",
    ) -> np.ndarray:
        """The cost of covering each row of ``table`` entirely, in :attr:`measure`.

        ``people`` names the column with the row's people (``population`` for areas,
        ``hh_size`` for households); ``households`` the column with its households (for
        households, pass a column of ones or use ``households=None`` semantics upstream).
        """
        need_people = self.measure == "people" or self.cost_per_person > 0
        need_households = self.measure == "households" or self.cost_per_household > 0
        cost = np.zeros(len(table))
        if need_people:
            require_columns(table, [people], what)
            pop = finite_column(table, people, what, lower=0)
            cost += pop if self.kind != "money" else pop * self.cost_per_person
        if need_households:
            require_columns(table, [households], what)
            hh = finite_column(table, households, what, lower=0)
            cost += hh if self.kind != "money" else hh * self.cost_per_household
        return cost

    def capacity(self, total_people: float) -> float:
        """The budget in :attr:`measure`; ``total_people`` is the population a share is of."""
        if self.kind == "share":
            return self.amount * float(total_people)
        return self.amount


#: What public functions accept as a budget: a Budget, its text form, or a number.
BudgetLike = Budget | str | float | int
