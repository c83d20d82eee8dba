// Run Python code under the official MicroPython WebAssembly port (Node).
// Input (stdin, JSON): {"files": {"/lib/protocol/cbor.py": "<base64>"}, "code": "...", "async": false,
//                       "heapsize": 8388608}
// Files are written into the port's in-memory filesystem; /lib is on sys.path.
// Output: the program's stdout on stdout; a Python exception goes to stderr and exit code 1.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));

let out = "";
let err = "";
const mp = await loadMicroPython({
  heapsize: job.heapsize || 8 * 1024 * 1024,
  stdout: (line) => { out += line + "\n"; },
  stderr: (line) => { err += line + "\n"; },
});

for (const [path, b64] of Object.entries(job.files || {})) {
  const parts = path.split("/").filter(Boolean);
  let dir = "";
  for (const p of parts.slice(0, -1)) {
    dir += "/" + p;
    try { mp.FS.mkdir(dir); } catch (e) { /* exists */ }
  }
  mp.FS.writeFile(path, Buffer.from(b64, "base64"));
}

let code = 0;
try {
  mp.runPython("import sys\nif '/lib' not in sys.path: sys.path.insert(0, '/lib')");
  if (job.async) {
    await mp.runPythonAsync(job.code);
  } else {
    mp.runPython(job.code);
  }
} catch (e) {
  err += String(e && e.message ? e.message : e) + "\n";
  code = 1;
}
process.stdout.write(out);
process.stderr.write(err);
process.exitCode = code;
