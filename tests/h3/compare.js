#!/usr/bin/env node
// Reference answers from h3-js (the H3 C library compiled to JavaScript) for
// src/spatial/h3_reference_test.cc, which compares them with tributary's own H3.
//
//   node tests/h3/compare.js points IN OUT   IN: "lat lng" per line (degrees)
//       OUT: per line, the cell of the point at resolutions 0..15, hex, space-separated
//   node tests/h3/compare.js cells IN OUT    IN: one hex cell per line
//       OUT: per line, sections separated by "|":
//       centre "lat lng" | boundary "lat lng lat lng ..." | parents at res 0..res-1 |
//       children at res+1 (sorted) | disk k=1 (sorted) | disk k=2 (sorted) | area km2 |
//       pentagon 0/1
//
// h3-js is looked up in .deps/node (scripts/setup.sh installs it there) or in H3JS_PATH.
// Exit code 3 when h3-js cannot be loaded.
'use strict';
const fs = require('fs');
const path = require('path');

const h3Path =
  process.env.H3JS_PATH || path.resolve(__dirname, '../../.deps/node/node_modules/h3-js');
let h3;
try {
  h3 = require(h3Path);
} catch (e) {
  process.stderr.write(`compare.js: cannot load h3-js from ${h3Path}: ${e.message}\n`);
  process.exit(3);
}

const [mode, inPath, outPath] = process.argv.slice(2);
if (!mode || !inPath || !outPath) {
  process.stderr.write('usage: compare.js points|cells IN OUT\n');
  process.exit(2);
}
const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length > 0);
const out = [];

// Numbers are printed with JavaScript's shortest round-trip form, so strtod reads back the
// exact double.
const num = (x) => String(x);
const sorted = (cells) => cells.slice().sort().join(' ');

if (mode === 'points') {
  for (const line of lines) {
    const [lat, lng] = line.split(' ').map(Number);
    const cells = [];
    for (let res = 0; res <= 15; res++) {
      let cell = '0';
      try {
        cell = h3.latLngToCell(lat, lng, res);
      } catch (e) {
        cell = '0';
      }
      cells.push(cell);
    }
    out.push(cells.join(' '));
  }
} else if (mode === 'cells') {
  for (const cell of lines) {
    const res = h3.getResolution(cell);
    const centre = h3.cellToLatLng(cell);
    const boundary = h3.cellToBoundary(cell).map(([a, b]) => `${num(a)} ${num(b)}`);
    const parents = [];
    for (let r = 0; r < res; r++) parents.push(h3.cellToParent(cell, r));
    const children = res < 15 ? sorted(h3.cellToChildren(cell, res + 1)) : '';
    out.push(
      [
        `${num(centre[0])} ${num(centre[1])}`,
        boundary.join(' '),
        parents.join(' '),
        children,
        sorted(h3.gridDisk(cell, 1)),
        sorted(h3.gridDisk(cell, 2)),
        num(h3.cellArea(cell, h3.UNITS.km2)),
        h3.isPentagon(cell) ? '1' : '0',
      ].join('|'),
    );
  }
} else {
  process.stderr.write(`compare.js: unknown mode ${mode}\n`);
  process.exit(2);
}
fs.writeFileSync(outPath, out.join('\n') + '\n');
