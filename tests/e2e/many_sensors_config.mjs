// The pipeline of the many-sensor checks (tests/e2e and bench/dashboard_2000.mjs): a
// simulator of `devices` sensors at 300× speed, one-minute windows per device, no sinks,
// the API on 127.0.0.1:`port` without a rate limit.
export function manySensorsConfig({ dir, port, devices = 2000 }) {
  return `pipeline:
  name: dashboard-${devices}
  data_dir: ${dir}
processing:
  grace: 15m
sources:
  - name: simulator
    type: simulator
    devices: ${devices}
    speed: 300
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
sinks: []
server:
  listen: 127.0.0.1:${port}
  rate_limit: 0
`;
}
