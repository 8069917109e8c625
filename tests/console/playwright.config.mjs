// Browser tests of the web console: Playwright driving the system's Chromium (Debian's
// `chromium`, or CHROMIUM_PATH) against the stack scripts/e2e started (BASE_URL).
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.mjs",
  workers: 2,
  reporter: "list",
  outputDir: process.env.EP_CONSOLE_OUTPUT || "test-results",
  use: {
    baseURL: process.env.BASE_URL,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
      args: ["--no-sandbox"],
    },
  },
});
