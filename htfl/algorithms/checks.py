"""Field types for methods' ``Params``: each carries its check, so the experiment loader reports
``algorithm.params.name: expected ..., got ...`` for every bad parameter at once.
"""

from __future__ import annotations

from typing import Annotated

from htfl.models import ARCHITECTURES
from htfl.validation import Int, Number, Text, above, at_least, one_of, within

NonNegative = Annotated[Number, at_least(0)]
Positive = Annotated[Number, above(0)]
Fraction = Annotated[Number, within(0, 1)]  # [0, 1]
Share = Annotated[Number, within(0, 1, low_open=True)]  # (0, 1]
Count = Annotated[Int, at_least(0)]
AtLeastOne = Annotated[Int, at_least(1)]
AtLeastTwo = Annotated[Int, at_least(2)]  # a batch BatchNorm can train on
Architecture = Annotated[Text, one_of(ARCHITECTURES, "architecture")]
