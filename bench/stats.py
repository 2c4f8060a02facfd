"""Helpers shared by the benchmark summaries (bench/uring_summary.py,
bench/readout_summary.py): the runs that succeeded, median [min–max] cells,
the rates table svgplot draws."""
import csv
import os
import statistics


def successful_runs(out):
    """(row, raw) for each row of OUT/runs.tsv whose command exited 0; raw
    is the path of its files without the suffix (raw/<id>.time, .out, ...)."""
    with open(f"{out}/runs.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            raw = f"{out}/raw/{row['id']}"
            if os.path.exists(f"{raw}.rc") and open(f"{raw}.rc").read().strip() == "0":
                yield row, raw


def med(values, digits=0):
    """A table cell: **median** [min–max] of values, with digits decimals."""
    return (f"**{statistics.median(values):.{digits}f}** "
            f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")


def write_rates(path, rows):
    """rows of (label, median, min, max) as the TSV svgplot.bars reads."""
    with open(path, "w") as f:
        f.write("label\tmedian\tmin\tmax\n")
        for r in rows:
            f.write("%s\t%s\t%s\t%s\n" % r)
