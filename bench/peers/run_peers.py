#!/usr/bin/python3
"""tributary against the reference stacks, on the same input, in one run.

    bench/peers/run_peers.py [--devices 500] [--hours 24] [--points 200000] [--work DIR]

1. Generates an archive with `tributary simulate` (the simulator's faults included:
   malformed payloads, duplicates, mg/m³ vendors, UTM-projected devices, late bursts).
2. Runs `tributary backfill` over it (5-minute tumbling windows per district and per
   device; windows, quarantine and late records stored in the local store), the pandas
   pipeline (pandas_pipeline.py) and the DuckDB SQL (duckdb_windows.sql), each as a child
   process whose wall time and peak RSS (wait4) are measured.
3. Checks that the window results agree: counts and distinct sensors exactly, mean,
   median, p95 and std to a relative 1e-9 (absolute 1e-9 near zero).
4. Does the same for the zone lookup alone (50,000 polygons) and the IDW surface alone
   (2,000 sensors, 1000 × 1000 grid, k = 8).
Prints a Markdown table per comparison. Needs Debian's python3-pandas, python3-shapely,
python3-pyproj and python3-scipy (`scripts/setup.sh --peers` installs them) and a build
(build/release or build/ci).
"""
import argparse
import csv
import json
import math
import os
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "bench", "peers")
PY = "/usr/bin/python3"  # Debian's interpreter, where Debian's packages are


def find_build(name):
    for preset in ("release", "ci"):
        for sub in ("", "bench"):
            p = os.path.join(ROOT, "build", preset, sub, name)
            if os.path.exists(p):
                return p
    sys.exit(f"run_peers: {name} is not built (scripts/setup.sh builds build/release)")


def run(cmd):
    """Run cmd under wait4: (stdout, wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    out_path = os.path.join(WORK, "child.out")
    err_path = os.path.join(WORK, "child.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                os.execvp(cmd[0], cmd)
            finally:
                os._exit(127)
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(err_path) as f:
            sys.exit(f"run_peers: {' '.join(cmd)} failed ({code}):\n{f.read()[-4000:]}")
    with open(out_path) as f:
        return f.read(), wall, usage.ru_maxrss / 1024.0


def last_json(text):
    """The JSON figures a child prints on its last line (log lines may come before)."""
    return json.loads(text.strip().splitlines()[-1])


def close(a, b):
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def num(x):
    if x is None or x == "":
        return None
    return float(x)


def compare(ours, theirs, label):
    """ours, theirs: {key: row dict}. Returns a one-line verdict and the mismatch count."""
    bad = []
    for k in sorted(set(ours) | set(theirs)):
        a, b = ours.get(k), theirs.get(k)
        if a is None or b is None:
            bad.append((k, "only in " + ("tributary" if b is None else label)))
            continue
        for col in ("count", "distinct_sensors"):
            if int(float(a[col])) != int(float(b[col])):
                bad.append((k, f"{col} {a[col]} vs {b[col]}"))
        for col in ("mean", "median", "p95", "std"):
            if not close(num(a[col]), num(b[col])):
                bad.append((k, f"{col} {a[col]} vs {b[col]}"))
    for k, why in bad[:10]:
        print(f"  mismatch {label} {k}: {why}")
    return len(set(ours) & set(theirs)), len(bad)


def tributary_windows(db, window):
    con = sqlite3.connect(db)
    rows = {}
    q = ("SELECT window_start_us, group_key, metric, sample_count, mean, median, p95, std, "
         "distinct_sensors FROM latest_windows WHERE window = ?")
    for r in con.execute(q, (window,)):
        rows[(r[0], r[1], r[2])] = dict(zip(
            ["count", "mean", "median", "p95", "std", "distinct_sensors"], r[3:]))
    con.close()
    return rows


def csv_windows(path, group_col):
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            rows[(int(r["window_start_us"]), r[group_col], r["metric"])] = r
    return rows


def table(title, rows, unit):
    """rows: (name, items, wall seconds, peak RSS MiB); the first row is tributary's."""
    print(f"\n### {title}\n")
    print(f"| implementation | {unit}/s | wall s | peak RSS MiB | time ÷ tributary's |")
    print("|---|---:|---:|---:|---:|")
    for name, items, wall, rss in rows:
        print(f"| {name} | {items / wall:,.0f} | {wall:.2f} | {rss:.0f} | {wall / rows[0][2]:.1f} |")


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--work", default="/tmp/tributary-peers")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    WORK = a.work
    os.makedirs(WORK, exist_ok=True)
    trib = find_build("tributary")
    spatial = find_build("peer_spatial_bench")
    libduckdb = os.path.join(ROOT, ".deps", "duckdb", "lib", "libduckdb.so")
    zones = os.path.join(ROOT, "examples", "zones", "city_districts.geojson")

    archive = os.path.join(WORK, f"sim-{a.hours}h-{a.devices}.ndjson")
    if not os.path.exists(archive):
        subprocess.run([trib, "simulate", "--seed", "1", "--devices", str(a.devices),
                        "--start", "2024-05-01T00:00:00Z", "--duration", f"{a.hours}h",
                        "--interval", "60s", "-o", archive], check=True)
    config = os.path.join(WORK, "peers.yaml")
    aggregates = "[count, mean, median, p95, std, distinct_sensors, centroid]"
    with open(config, "w") as f:
        f.write(f"""processing:
  grace: 2h
zones:
  layers:
    - {{name: district, path: {zones}, id_field: district_id}}
windows:
  - {{name: zone5m, type: tumbling, size: 5m, group_by: zone, aggregates: {aggregates}}}
  - {{name: dev5m, type: tumbling, size: 5m, group_by: device, aggregates: {aggregates}}}
surfaces:
  - {{name: pm25, window: dev5m, metric: pm25, width: 200, height: 200, formats: [json]}}
sinks:
  - {{name: local, type: sqlite, tables: [windows, quarantine, late]}}
""")
    out_dir = os.path.join(WORK, "tributary-out")
    text, t_wall, t_rss = run([trib, "backfill", "--config", config, "--output", out_dir,
                               "--as-of", "2024-06-01T00:00:00Z", "--force", "--no-progress",
                               archive])
    with open(os.path.join(out_dir, "ledger.json")) as f:
        ledger = json.load(f)
    readings = ledger.get("accepted") or ledger.get("ledger", {}).get("accepted")
    db = os.path.join(out_dir, "tributary.gpkg")

    pandas_csv = os.path.join(WORK, "pandas.csv")
    p_text, p_wall, p_rss = run([PY, os.path.join(PEERS, "pandas_pipeline.py"), archive, zones,
                                 pandas_csv])
    duck_csv = os.path.join(WORK, "duckdb.csv")
    d_text, d_wall, d_rss = run([PY, os.path.join(PEERS, "duckdb_peer.py"), libduckdb, archive,
                                 duck_csv, "--threads", str(a.threads)])

    print(f"# tributary and its peers on {a.devices} simulated devices × {a.hours} h "
          f"({os.path.getsize(archive) / 2**20:.0f} MiB NDJSON, {readings:,} accepted readings)")
    print(f"\npandas stages (s): {json.loads(p_text)['seconds']}")
    shared, bad = compare(tributary_windows(db, "zone5m"), csv_windows(pandas_csv, "zone"), "pandas")
    print(f"zone windows: {shared} shared keys, {bad} mismatches (pandas)")
    shared_d, bad_d = compare(tributary_windows(db, "dev5m"), csv_windows(duck_csv, "device"),
                              "duckdb")
    print(f"device windows: {shared_d} shared keys, {bad_d} mismatches (duckdb)")
    table("End to end (validate, normalise, zones, 5-minute windows)", [
        ("tributary backfill", readings, t_wall, t_rss),
        ("pandas + shapely + pyproj + scipy", readings, p_wall, p_rss),
        ("DuckDB SQL (per device, no zones)", readings, d_wall, d_rss)], "readings")

    polygons = os.path.join(WORK, "zones50k.geojson")
    points = os.path.join(WORK, f"points{a.points}.csv")
    if not os.path.exists(points) or not os.path.exists(polygons):
        subprocess.run([PY, os.path.join(PEERS, "spatial_peers.py"), "make-zones", polygons,
                        points, "--points", str(a.points)], check=True)
    ours_z, ours_z_wall, ours_z_rss = run([spatial, "zones", polygons, "zone_id", points,
                                           os.path.join(WORK, "zones_ours.txt")])
    theirs_z, _, theirs_z_rss = run([PY, os.path.join(PEERS, "spatial_peers.py"), "zones",
                                     polygons, points, os.path.join(WORK, "zones_peer.txt")])
    with open(os.path.join(WORK, "zones_ours.txt")) as f1, \
         open(os.path.join(WORK, "zones_peer.txt")) as f2:
        differ = sum(1 for x, y in zip(f1, f2) if x != y)
    oz, tz = last_json(ours_z), last_json(theirs_z)
    print(f"\nzone lookup: {oz['items']} points, {differ} answers differ")
    table("Zone lookup alone (50,000 polygons; time of the lookups only)", [
        ("tributary ZoneLocator (R-tree + GEOS prepared)", oz["items"], oz["seconds"], ours_z_rss),
        ("shapely 1.8 STRtree + covers", tz["items"], tz["seconds"], theirs_z_rss)], "lookups")

    sensors = os.path.join(WORK, "sensors2000.csv")
    if not os.path.exists(sensors):
        subprocess.run([PY, os.path.join(PEERS, "spatial_peers.py"), "make-sensors", sensors],
                       check=True)
    ours_i, _, ours_i_rss = run([spatial, "idw", sensors, "1000", os.path.join(WORK, "idw_ours.f32")])
    theirs_i, _, theirs_i_rss = run([PY, os.path.join(PEERS, "spatial_peers.py"), "idw", sensors,
                                     "1000", os.path.join(WORK, "idw_peer.f32")])
    import numpy as np
    g1 = np.fromfile(os.path.join(WORK, "idw_ours.f32"), dtype="<f4")
    g2 = np.fromfile(os.path.join(WORK, "idw_peer.f32"), dtype="<f4")
    worst = float(np.max(np.abs(g1 - g2))) if g1.size == g2.size else float("inf")
    oi, ti = last_json(ours_i), last_json(theirs_i)
    print(f"\nIDW: {oi['items']} cells, largest difference {worst:.2e}")
    table("IDW surface alone (2,000 sensors, 1000 × 1000, k = 8; time of the surface only)", [
        ("tributary IdwInterpolator (nanoflann, tiles)", oi["items"], oi["seconds"], ours_i_rss),
        ("scipy cKDTree + numpy", ti["items"], ti["seconds"], theirs_i_rss)], "cells")
    return 1 if bad or bad_d or differ or worst > 1e-3 else 0


if __name__ == "__main__":
    sys.exit(main())
