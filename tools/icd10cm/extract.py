"""Writes ICD-10-CM as our own compact data file: one line per code, tab-separated
`code  billable(1|0)  description`, gzip-compressed, sorted by code.

Codes are categories and subcategories (chapters and blocks are left out: they cannot be
recorded as a diagnosis). A code is billable when it has no children, which is how the CDC
tabular list marks the codes that may be reported.
"""

import gzip
import sys

import simple_icd_10_cm as cm


def rows():
    for code in cm.get_all_codes(with_dots=True):
        if not cm.is_category_or_subcategory(code):
            continue
        billable = "1" if cm.is_leaf(code) else "0"
        description = " ".join(cm.get_description(code).split())
        yield f"{code}\t{billable}\t{description}\n"


def main(out_path: str) -> None:
    lines = sorted(set(rows()))
    # mtime=0: the same input gives the same bytes, so the checksum is stable.
    with open(out_path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
            out.write("".join(lines).encode("utf-8"))
    print(f"{len(lines)} codes written to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1])
