"""A day of plant data into Polars, and statistics per shift.

Notebook-style: each step is a plain block a plant engineer can run cell by
cell. It pulls one day of history for the given tags from a Bifrost cluster
(``history_df``: the server's Arrow stream, no per-row Python objects), adds
the shift each reading falls in, and prints per tag and shift the number of
readings, how many were not Good, and min/mean/max of the values.

    python examples/analytics.py --endpoints 127.0.0.1:7001 --day 2026-12-05 \\
        plant/sim00000/sine plant/sim00001/sine

Shifts are the classic three eight-hour shifts in UTC: early 06-14, late
14-22, night 22-06 (a night shift's readings after midnight belong to the
day it started). ``--csv FILE`` also writes the table.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime, time, timedelta, timezone

import polars as pl

import bifrost_client as bc

SHIFTS = (("early", 6, 14), ("late", 14, 22), ("night", 22, 30))
"""(name, first hour, end hour) from the start of the day; 30 is 06:00 the next day."""


def day_window(day: date) -> tuple[datetime, datetime]:
    """The day's shifts span 06:00 that day to 06:00 the next (UTC)."""
    start = datetime.combine(day, time(6), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def with_shifts(df: pl.DataFrame, day: date) -> pl.DataFrame:
    """``df`` with a ``shift`` column from each reading's hour since midnight of ``day``."""
    midnight = datetime.combine(day, time(0), tzinfo=timezone.utc)
    hours = (pl.col("ts") - pl.lit(midnight)).dt.total_hours()
    shift = pl.when(hours < SHIFTS[0][2]).then(pl.lit(SHIFTS[0][0]))
    for name, _first, end in SHIFTS[1:]:
        shift = shift.when(hours < end).then(pl.lit(name))
    return df.with_columns(shift.otherwise(None).alias("shift"))


def per_shift(df: pl.DataFrame) -> pl.DataFrame:
    """Per tag and shift: readings, not-Good readings, min/mean/max of the values."""
    order = {name: i for i, (name, _, _) in enumerate(SHIFTS)}
    return (
        df.group_by("tag", "shift")
        .agg(
            pl.len().alias("readings"),
            (pl.col("quality").cast(pl.String) != "good").sum().alias("not_good"),
            pl.col("value").min().alias("min"),
            pl.col("value").mean().alias("mean"),
            pl.col("value").max().alias("max"),
        )
        .with_columns(pl.col("shift").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
        .sort("tag", "_order")
        .drop("_order")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tags", nargs="+", help="tag names")
    p.add_argument("--endpoints", default="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    p.add_argument("--day", type=date.fromisoformat, default=date.today() - timedelta(days=1))
    p.add_argument("--ca", help="the cluster's CA certificate (TLS)")
    p.add_argument("--token", help="a session token (bifrostctl login)")
    p.add_argument("--csv", help="also write the table to this file")
    a = p.parse_args()

    # 1. Connect.
    client = bc.Client(a.endpoints.split(","), ca=a.ca, token=a.token)
    # 2. A day of history, one frame (timestamps in UTC, quality categorical).
    start, end = day_window(a.day)
    df = client.history_df(a.tags, start, end)
    # 3. Which shift each reading belongs to.
    df = with_shifts(df, a.day)
    # 4. Statistics per tag and shift.
    table = per_shift(df)
    with pl.Config(tbl_rows=100, tbl_cols=20, float_precision=3):
        print(f"{df.height} readings of {len(a.tags)} tag(s) on {a.day} (06:00 UTC to 06:00 UTC)")
        print(table)
    if a.csv:
        table.write_csv(a.csv)
    client.close()


if __name__ == "__main__":
    main()
