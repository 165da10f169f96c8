#!/usr/bin/python3
"""The zone lookup alone and the IDW surface alone, in Python (shapely STRtree, scipy
cKDTree), over inputs this script also generates for both sides.

    spatial_peers.py make-zones POLYGONS.geojson POINTS.csv [--points N]
    spatial_peers.py zones POLYGONS.geojson POINTS.csv OUT.txt
    spatial_peers.py make-sensors SENSORS.csv [--sensors N]
    spatial_peers.py idw SENSORS.csv SIDE OUT.f32

The zones are 50,000 irregular polygons tiling a 5° × 4° area: a 250 × 200 grid whose
shared corners and edge midpoints are jittered (8 vertices each, so neighbours share
their boundary exactly), as in bench/zones_bench.cc. Each run prints a JSON line
{"items": N, "seconds": S} timing only the work.
"""
import argparse
import json
import math
import random
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="STRtree will be changed")

NX, NY, LON0, LAT0, CELL = 250, 200, 10.0, 50.0, 0.02
EARTH_RADIUS_M = 6371008.8


def make_zones(polygons_path, points_path, n_points):
    rng = random.Random(11)
    w, h = 2 * NX + 1, 2 * NY + 1
    v = {}
    for j in range(h):
        for i in range(w):
            border = i in (0, w - 1) or j in (0, h - 1)
            jx = 0 if border else rng.uniform(-0.2 * CELL, 0.2 * CELL)
            jy = 0 if border else rng.uniform(-0.2 * CELL, 0.2 * CELL)
            v[i, j] = (round(LON0 + i * CELL / 2 + jx, 9), round(LAT0 + j * CELL / 2 + jy, 9))
    features = []
    for y in range(NY):
        for x in range(NX):
            i, j = 2 * x, 2 * y
            ring = [v[i, j], v[i + 1, j], v[i + 2, j], v[i + 2, j + 1], v[i + 2, j + 2],
                    v[i + 1, j + 2], v[i, j + 2], v[i, j + 1], v[i, j]]
            features.append({"type": "Feature", "properties": {"zone_id": f"z{y:03d}{x:03d}"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    with open(polygons_path, "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    with open(points_path, "w") as f:
        for _ in range(n_points):
            f.write(f"{rng.uniform(LAT0, LAT0 + NY * CELL):.9f},"
                    f"{rng.uniform(LON0, LON0 + NX * CELL):.9f}\n")


def zones(polygons_path, points_path, out_path):
    import shapely.geometry
    from shapely.strtree import STRtree
    with open(polygons_path) as f:
        fc = json.load(f)
    geoms = [shapely.geometry.shape(ft["geometry"]) for ft in fc["features"]]
    ids = [ft["properties"]["zone_id"] for ft in fc["features"]]
    index_of = {id(g): i for i, g in enumerate(geoms)}
    tree = STRtree(geoms)
    pts = np.loadtxt(points_path, delimiter=",", ndmin=2)
    points = [shapely.geometry.Point(lon, lat) for lat, lon in pts]
    t0 = time.perf_counter()
    out = []
    for p in points:
        hit = None
        for g in tree.query(p):
            g = geoms[g] if isinstance(g, (int, np.integer)) else g
            if g.covers(p):
                zid = ids[index_of[id(g)]]
                hit = zid if hit is None else min(hit, zid)
        out.append(hit or "")
    seconds = time.perf_counter() - t0
    with open(out_path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(json.dumps({"items": len(out), "seconds": seconds}))


def make_sensors(path, n):
    rng = random.Random(2)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(f"{rng.uniform(52.34, 52.70):.9f},{rng.uniform(13.10, 13.70):.9f},"
                    f"{rng.uniform(0, 80):.6f}\n")


def idw(sensors_path, side, out_path):
    from scipy.spatial import cKDTree
    s = np.loadtxt(sensors_path, delimiter=",", ndmin=2)
    lat, lon, val = s[:, 0], s[:, 1], s[:, 2]
    t0 = time.perf_counter()
    lat0, lon0 = lat.mean(), lon.mean()
    kx = EARTH_RADIUS_M * math.radians(1) * math.cos(math.radians(lat0))
    ky = EARTH_RADIUS_M * math.radians(1)
    tree = cKDTree(np.column_stack([(lon - lon0) * kx, (lat - lat0) * ky]))
    f = (np.arange(side) + 0.5) / side
    glon = lon.min() + f * (lon.max() - lon.min())
    glat = lat.max() - f * (lat.max() - lat.min())
    gx, gy = np.meshgrid((glon - lon0) * kx, (glat - lat0) * ky)
    d, i = tree.query(np.column_stack([gx.ravel(), gy.ravel()]), k=8)
    v = val[i]
    with np.errstate(divide="ignore"):
        w = 1.0 / d ** 2
    est = (w * v).sum(axis=1) / w.sum(axis=1)
    exact = d[:, 0] == 0
    est[exact] = v[exact, 0]
    seconds = time.perf_counter() - t0
    est.astype("<f4").tofile(out_path)
    print(json.dumps({"items": int(est.size), "seconds": seconds}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-zones")
    p.add_argument("polygons")
    p.add_argument("points")
    p.add_argument("--points", dest="n", type=int, default=200_000)
    p = sub.add_parser("zones")
    p.add_argument("polygons")
    p.add_argument("points")
    p.add_argument("out")
    p = sub.add_parser("make-sensors")
    p.add_argument("sensors")
    p.add_argument("--sensors", dest="n", type=int, default=2000)
    p = sub.add_parser("idw")
    p.add_argument("sensors")
    p.add_argument("side", type=int)
    p.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "make-zones":
        make_zones(a.polygons, a.points, a.n)
    elif a.cmd == "zones":
        zones(a.polygons, a.points, a.out)
    elif a.cmd == "make-sensors":
        make_sensors(a.sensors, a.n)
    else:
        idw(a.sensors, a.side, a.out)


if __name__ == "__main__":
    sys.exit(main())
