#!/usr/bin/env node
// Fine-tune BERT on GLUE from the command line: `node train.js --epochs 3`. See `node train.js --help`.
import { main } from './dist/src/cli.js';

process.exitCode = await main();
