-- The windowed aggregation as SQL in DuckDB over the same NDJSON archive: validation
-- (position, units, physical bounds), de-duplication on (device, metric, event time) and
-- 5-minute tumbling aggregates per device and metric. DuckDB without its spatial
-- extension (not reachable offline) cannot reproject or join zones, so this peer groups
-- by device. {input} and {output} are filled in by duckdb_peer.py.
COPY (
  WITH lines AS (
    -- One row per line, parsed on its own: read_json's ignore_errors skips a whole
    -- buffer of valid lines around a malformed one, where a reading must not be lost.
    SELECT line FROM read_csv('{input}', columns = {line: 'VARCHAR'}, header = false,
      delim = E'\x1f', quote = '', escape = '', auto_detect = false, strict_mode = false,
      null_padding = false, ignore_errors = false)
    -- CASE, not AND: DuckDB may evaluate the operands of AND in any order.
    WHERE CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END
  ),
  raw AS (
    -- The filter above may run after this projection, so the CASE guards it as well.
    SELECT unnest(json_transform(CASE WHEN json_valid(line) THEN line END, '{"device_id": "VARCHAR", "sensor_ts": "DOUBLE",
      "lat": "DOUBLE", "lon": "DOUBLE", "x": "DOUBLE", "y": "DOUBLE", "crs": "VARCHAR",
      "units": "JSON", "pm25": "DOUBLE", "pm10": "DOUBLE", "no2": "DOUBLE",
      "temperature": "DOUBLE", "humidity": "DOUBLE", "pressure": "DOUBLE",
      "wind_speed": "DOUBLE", "soil_moisture": "DOUBLE", "stage": "DOUBLE",
      "flow": "DOUBLE"}')) FROM lines
  ),
  valid AS (
    SELECT * FROM raw
    WHERE device_id IS NOT NULL AND device_id <> '' AND sensor_ts IS NOT NULL
      AND ((lat IS NOT NULL AND lon IS NOT NULL AND isfinite(lat) AND isfinite(lon)
            AND abs(lat) <= 90 AND abs(lon) <= 180)
           OR (lat IS NULL AND lon IS NULL AND isfinite(x) AND isfinite(y)
               AND crs IS NOT NULL))
  ),
  long AS (
    UNPIVOT valid ON pm25, pm10, no2, temperature, humidity, pressure, wind_speed,
                     soil_moisture, stage, flow
    INTO NAME metric VALUE raw_value
  ),
  converted AS (
    SELECT device_id, metric, CAST(round(sensor_ts * 1000) AS BIGINT) AS t_us,
           json_extract_string(units, '$.' || metric) AS unit, raw_value
    FROM long
    WHERE isfinite(raw_value)
  ),
  canonical AS (
    SELECT device_id, metric, t_us,
           CASE WHEN unit IS NULL THEN raw_value
                WHEN metric IN ('pm25', 'pm10') AND unit = 'ug/m3' THEN raw_value
                WHEN metric IN ('pm25', 'pm10') AND unit = 'mg/m3' THEN raw_value * 1000
                WHEN (metric, unit) IN (('temperature', 'degC'), ('pressure', 'hPa'),
                                        ('wind_speed', 'm/s'), ('stage', 'm'),
                                        ('flow', 'm3/s'), ('humidity', '%'),
                                        ('soil_moisture', '%')) THEN raw_value
                ELSE NULL END AS value
    FROM converted
  ),
  bounded AS (
    SELECT * FROM canonical
    WHERE value IS NOT NULL AND CASE metric
      WHEN 'pm25' THEN value BETWEEN 0 AND 1000
      WHEN 'pm10' THEN value BETWEEN 0 AND 2000
      WHEN 'no2' THEN value BETWEEN 0 AND 2500
      WHEN 'temperature' THEN value BETWEEN -50 AND 60
      WHEN 'humidity' THEN value BETWEEN 0 AND 100
      WHEN 'pressure' THEN value BETWEEN 500 AND 1100
      WHEN 'wind_speed' THEN value BETWEEN 0 AND 120
      WHEN 'soil_moisture' THEN value BETWEEN 0 AND 100
      WHEN 'stage' THEN value BETWEEN -10 AND 100
      WHEN 'flow' THEN value BETWEEN 0 AND 1e6
      ELSE false END
  ),
  deduplicated AS (
    SELECT DISTINCT ON (device_id, metric, t_us) * FROM bounded
  )
  SELECT (t_us // 300000000) * 300000000 AS window_start_us, device_id AS device, metric,
         count(*) AS count, avg(value) AS mean, quantile_cont(value, 0.5) AS median,
         quantile_cont(value, 0.95) AS p95, stddev_samp(value) AS std,
         count(DISTINCT device_id) AS distinct_sensors
  FROM deduplicated
  GROUP BY ALL
  ORDER BY ALL
) TO '{output}' (HEADER, DELIMITER ',');
