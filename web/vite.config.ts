import { defineConfig } from "vite";

// The dashboard is built into web/dist, which the tributary binary embeds.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2020" },
  server: { proxy: { "/api": { target: "http://127.0.0.1:8080", ws: true } } },
});
