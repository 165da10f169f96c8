#!/usr/bin/python3
"""Run duckdb_windows.sql over an NDJSON archive with DuckDB's C library (ctypes).

    duckdb_peer.py LIBDUCKDB INPUT.ndjson OUT.csv [--threads N]

Uses the same libduckdb.so tributary links (.deps/duckdb/lib), so no Python package is
needed. Prints a JSON line with the rows written and the seconds spent.
"""
import argparse
import ctypes
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libduckdb")
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    lib = ctypes.CDLL(a.libduckdb)
    lib.duckdb_result_error.restype = ctypes.c_char_p
    db = ctypes.c_void_p()
    con = ctypes.c_void_p()
    if lib.duckdb_open(None, ctypes.byref(db)) != 0 or lib.duckdb_connect(db, ctypes.byref(con)) != 0:
        print("duckdb: cannot open an in-memory database", file=sys.stderr)
        return 1
    result = ctypes.create_string_buffer(128)  # duckdb_result is 48 bytes in DuckDB 1.x

    def run(sql):
        state = lib.duckdb_query(con, sql.encode(), result)
        err = lib.duckdb_result_error(result) if state != 0 else None
        lib.duckdb_destroy_result(result)
        if state != 0:
            raise RuntimeError((err or b"query failed").decode())

    sql_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "duckdb_windows.sql")
    with open(sql_path) as f:
        sql = f.read()
    sql = sql.replace("{input}", a.input.replace("'", "''")).replace(
        "{output}", a.out.replace("'", "''"))
    run(f"SET threads = {a.threads}")
    t0 = time.perf_counter()
    run(sql)
    seconds = time.perf_counter() - t0
    with open(a.out) as f:
        rows = sum(1 for _ in f) - 1
    print(json.dumps({"windows": rows, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
