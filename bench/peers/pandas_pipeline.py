#!/usr/bin/python3
"""The reference pipeline the seeds describe, in Python with Debian's packages.

Reads a `tributary simulate` NDJSON archive and does what tributary's pipeline does for
it: validation (JSON, device id, timestamp, position, units, physical bounds),
CRS normalisation of projected devices with pyproj, de-duplication on (device, metric,
event time), the zone join with a shapely STRtree, 5-minute tumbling aggregates per
zone and metric (count, mean, median, p95, std, distinct sensors) and an IDW grid of
each window's per-device PM2.5 means with scipy's cKDTree (k = 8, power 2).

    pandas_pipeline.py INPUT.ndjson ZONES.geojson OUT.csv [--grid N]

Writes one CSV row per (window_start_us, zone, metric) and prints a JSON line with
the counts and the time spent per stage.
"""
import argparse
import json
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pyproj
import shapely.geometry
from scipy.spatial import cKDTree
from shapely.strtree import STRtree

warnings.filterwarnings("ignore", message="STRtree will be changed")

# Canonical metrics and their physical bounds (tributary's metric table, ingest/metrics.cc).
BOUNDS = {
    "pm25": (0, 1000), "pm10": (0, 2000), "no2": (0, 2500), "o3": (0, 1000),
    "temperature": (-50, 60), "humidity": (0, 100), "pressure": (500, 1100),
    "wind_speed": (0, 120), "soil_moisture": (0, 100), "stage": (-10, 100),
    "flow": (0, 1e6), "dissolved_oxygen": (0, 20), "conductivity": (0, 100000),
}
# Units the simulator sends, as factors to the canonical unit; any other unit is unknown.
UNITS = {
    "pm25": {"ug/m3": 1.0, "mg/m3": 1000.0}, "pm10": {"ug/m3": 1.0, "mg/m3": 1000.0},
    "temperature": {"degC": 1.0}, "pressure": {"hPa": 1.0}, "wind_speed": {"m/s": 1.0},
    "stage": {"m": 1.0}, "flow": {"m3/s": 1.0}, "humidity": {"%": 1.0},
    "soil_moisture": {"%": 1.0},
}
WINDOW_US = 5 * 60 * 1_000_000
EARTH_RADIUS_M = 6371008.8


def finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse(path):
    """Validated readings in long format, and the count of rejected payloads."""
    rows = []
    rejected = 0
    projected = {}  # crs -> list of row indexes waiting for reprojection
    with open(path, "rb") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                rejected += 1
                continue
            if not isinstance(d, dict):
                rejected += 1
                continue
            dev = d.get("device_id")
            ts = d.get("sensor_ts")
            if not isinstance(dev, str) or not dev or not finite_number(ts):
                rejected += 1
                continue
            t_us = int(round(ts * 1000))
            if "lat" in d or "lon" in d:
                lat, lon = d.get("lat"), d.get("lon")
                if not (finite_number(lat) and finite_number(lon)) or abs(lat) > 90 or abs(lon) > 180:
                    rejected += 1
                    continue
                crs = None
            else:
                lat, lon, crs = d.get("x"), d.get("y"), d.get("crs")
                if not (finite_number(lat) and finite_number(lon)) or not isinstance(crs, str):
                    rejected += 1
                    continue
            units = d.get("units") or {}
            if not isinstance(units, dict):
                units = {}
            first = len(rows)
            for metric, bounds in BOUNDS.items():
                v = d.get(metric)
                if v is None:
                    continue
                if not finite_number(v):
                    continue
                unit = units.get(metric)
                if unit is not None:
                    factor = UNITS.get(metric, {}).get(unit)
                    if factor is None:
                        continue  # unknown unit: that reading is quarantined
                    v = v * factor
                if not bounds[0] <= v <= bounds[1]:
                    continue
                rows.append((dev, metric, t_us, float(v), lat, lon))
            if crs is not None:
                projected.setdefault(crs, []).extend(range(first, len(rows)))
    df = pd.DataFrame(rows, columns=["device", "metric", "t_us", "value", "lat", "lon"])
    return df, rejected, projected


def reproject(df, projected):
    for crs, idx in projected.items():
        if not idx:
            continue
        tr = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        x = df.loc[idx, "lat"].to_numpy()  # x and y were stored in the lat/lon columns
        y = df.loc[idx, "lon"].to_numpy()
        lon, lat = tr.transform(x, y)
        df.loc[idx, "lat"] = lat
        df.loc[idx, "lon"] = lon
    return df


def zone_join(df, zones_path):
    with open(zones_path) as f:
        fc = json.load(f)
    geoms = [shapely.geometry.shape(ft["geometry"]) for ft in fc["features"]]
    ids = [ft["properties"]["district_id"] for ft in fc["features"]]
    tree = STRtree(geoms)
    index_of = {id(g): i for i, g in enumerate(geoms)}
    # One lookup per distinct position (stations do not move).
    pos = df[["lat", "lon"]].drop_duplicates()
    zone_of = {}
    for lat, lon in pos.itertuples(index=False):
        p = shapely.geometry.Point(lon, lat)
        hit = None
        for g in tree.query(p):
            g = geoms[g] if isinstance(g, (int, np.integer)) else g
            if g.covers(p):
                i = index_of[id(g)]
                hit = ids[i] if hit is None else min(hit, ids[i])
        zone_of[(lat, lon)] = hit
    df["zone"] = [zone_of[(a, b)] for a, b in zip(df["lat"].to_numpy(), df["lon"].to_numpy())]
    return df


def aggregate(df):
    df = df[df["zone"].notna()].copy()
    df["window_start_us"] = (df["t_us"] // WINDOW_US) * WINDOW_US
    g = df.groupby(["window_start_us", "zone", "metric"])["value"]
    out = pd.DataFrame({
        "count": g.count(),
        "mean": g.mean(),
        "median": g.median(),
        "p95": g.quantile(0.95),
        "std": g.std(ddof=1),
    })
    out["distinct_sensors"] = df.groupby(["window_start_us", "zone", "metric"])["device"].nunique()
    return out.reset_index()


def idw_grids(df, n):
    """IDW grids of the per-device PM2.5 means of every 5-minute window."""
    pm = df[df["metric"] == "pm25"].copy()
    if pm.empty:
        return 0
    pm["window_start_us"] = (pm["t_us"] // WINDOW_US) * WINDOW_US
    sensors = pm.groupby(["window_start_us", "device"]).agg(
        value=("value", "mean"), lat=("lat", "mean"), lon=("lon", "mean")).reset_index()
    lat0 = float(sensors["lat"].mean())
    lon0 = float(sensors["lon"].mean())
    kx = EARTH_RADIUS_M * math.radians(1) * math.cos(math.radians(lat0))
    ky = EARTH_RADIUS_M * math.radians(1)
    min_lat, max_lat = sensors["lat"].min(), sensors["lat"].max()
    min_lon, max_lon = sensors["lon"].min(), sensors["lon"].max()
    cols = (np.arange(n) + 0.5) / n
    glon = min_lon + cols * (max_lon - min_lon)
    glat = max_lat - cols * (max_lat - min_lat)
    gx, gy = np.meshgrid((glon - lon0) * kx, (glat - lat0) * ky)
    cells = np.column_stack([gx.ravel(), gy.ravel()])
    grids = 0
    for _, w in sensors.groupby("window_start_us"):
        if len(w) < 2:
            continue
        xy = np.column_stack([(w["lon"] - lon0) * kx, (w["lat"] - lat0) * ky])
        tree = cKDTree(xy)
        k = min(8, len(w))
        d, i = tree.query(cells, k=k)
        d = d.reshape(len(cells), k)
        i = i.reshape(len(cells), k)
        v = w["value"].to_numpy()[i]
        with np.errstate(divide="ignore"):
            wt = 1.0 / d ** 2
        exact = d[:, 0] == 0
        est = (wt * v).sum(axis=1) / wt.sum(axis=1)
        est[exact] = v[exact, 0]
        grids += 1
    return grids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("zones")
    ap.add_argument("out")
    ap.add_argument("--grid", type=int, default=200)
    a = ap.parse_args()
    t = {}
    t0 = time.perf_counter()
    df, rejected, projected = parse(a.input)
    t["parse_validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = reproject(df, projected)
    before = len(df)
    df = df.drop_duplicates(subset=["device", "metric", "t_us"], keep="first")
    t["crs_dedup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = zone_join(df, a.zones)
    t["zone_join"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    agg = aggregate(df)
    t["windows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grids = idw_grids(df, a.grid)
    t["idw"] = time.perf_counter() - t0
    agg.to_csv(a.out, index=False, float_format="%.17g")
    print(json.dumps({"readings": int(len(df)), "duplicates": int(before - len(df)),
                      "rejected_payloads": rejected, "windows": int(len(agg)),
                      "grids": grids, "seconds": t}))


if __name__ == "__main__":
    sys.exit(main())
