// The dashboard is served by tributary at /, so asset URLs are relative.
export default { base: './', build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1000 } };
