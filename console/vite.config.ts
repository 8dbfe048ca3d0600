import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import tailwindcss from "@tailwindcss/vite";

// The console is served by sortie-server under /console/ (console/embed.go embeds dist/).
// The output must be deterministic (test.sh rebuilds it and compares with the committed
// dist/) and must work under the server's strict Content-Security-Policy: no inline
// scripts or styles, no data: fonts, nothing from another origin.
export default defineConfig({
  base: "/console/",
  plugins: [react(), tailwindcss()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      "^/(oauth|auth|sortie\\.)": { target: "http://127.0.0.1:8080" },
    },
  },
});
