"""Data no one designed for the template: a user's awkward table."""

from __future__ import annotations

import numpy as np
import pandas as pd


def awkward_table(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """A user's table nobody designed for the template: headers with capitals, spaces and
    dots, an identifier, shuffled row numbers, a constant, a flag, float32 values, a
    protected attribute, a column written after the decision (a leak), missing values in
    numbers and categories, and text labels that follow from the features (so a model can
    learn them)."""
    rng = np.random.default_rng(seed)
    income = rng.normal(52_000, 15_000, rows).round(2)
    home = rng.choice(["RENT", "OWN", "MORTGAGE"], rows)
    approved = (income > 50_000) | (home == "OWN")
    frame = pd.DataFrame(
        {
            "Loan ID": [f"L-{index:06d}" for index in range(rows)],
            "Row": rng.permutation(np.arange(1, rows + 1)),
            "Annual Income": income,
            "Home Ownership": home,
            "Yrs Since.PhD": rng.integers(0, 40, rows),
            # Ten rates, as a float32 pipeline wrote them: 3.0999999046325684, ...
            "Interest Rate": rng.choice(np.arange(31, 41) / 10, rows)
            .astype(np.float32)
            .astype(np.float64),
            "Has Co-Signer": rng.choice([True, False], rows),
            "Applicant Race": rng.choice(["A", "B", "C", "D"], rows),
            "Branch": "Wellington",
            "Decision Code": np.where(approved, "APR", "REJ"),
            "Loan Status": np.where(approved, "approved", "rejected"),
        }
    )
    frame.loc[rng.choice(rows, 15, replace=False), "Annual Income"] = np.nan
    frame.loc[0, "Annual Income"] = np.nan  # the first row too: tests that take it must cope
    frame["Home Ownership"] = frame["Home Ownership"].astype(object)
    frame.loc[rng.choice(rows, 10, replace=False), "Home Ownership"] = None
    return frame


AWKWARD_TARGET = "Loan Status"
