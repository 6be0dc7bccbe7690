// Validates Kubernetes objects against the Kubernetes OpenAPI schema,
// offline: kubernetes-models' generated JSON schemas (the API's own
// OpenAPI document, see its README for the Kubernetes version), checked by
// @kubernetes-models/validate. Reads YAML files (several documents each)
// or "-" for stdin, e.g. the output of `kubectl kustomize deploy/kubernetes`.
// The generated schemas accept unknown fields, which an API server with
// strict field validation (kubectl's default) rejects: a second pass
// checks every field name against the models' type declarations (.d.ts).
// Prints one line per invalid object and exits 1; 0 when all are valid.
// It only reads: never contacts a cluster or the network.
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

// Field names and types of every model, from the packages' .d.ts files:
// interface name (local IFoo and exported IIoK8s... alias) -> {field: type}.
function loadFieldIndex() {
  const index = new Map();
  const roots = ["kubernetes-models", "@kubernetes-models/apimachinery"].map((p) =>
    path.dirname(require.resolve(p + "/package.json")));
  const files = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith(".d.ts")) files.push(full);
    }
  };
  roots.forEach(walk);
  for (const file of files) {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    const local = new Map();
    for (let i = 0; i < lines.length; i++) {
      const head = /^export interface (\w+)(?: extends [^{]+)? \{$/.exec(lines[i]);
      if (!head) continue;
      const fields = {};
      for (i++; i < lines.length && lines[i] !== "}"; i++) {
        const m = /^    "([^"]+)"\??: (.*)$/.exec(lines[i]);
        if (!m) continue;
        let type = m[2];
        if (type === "{") {   // a map: "[key: string]: T;" on the next line
          const v = /^\s+\[key: string\]: (.*);$/.exec(lines[i + 1] || "");
          type = "{" + (v ? v[1] : "any");
        }
        fields[m[1]] = type.replace(/;$/, "");
      }
      local.set(head[1], fields);
      index.set(head[1] + "@" + file, fields);
    }
    for (const m of fs.readFileSync(file, "utf8").matchAll(/export \{ (\w+) as (\w+),/g)) {
      if (local.has(m[1])) index.set(m[2], local.get(m[1]));
    }
    local.forEach((fields, name) => index.set(name + "@" + file, fields));
  }
  return index;
}

// Unknown field names in `value` of declared `type`, as "/path/field".
function unknownFields(index, value, type, where, out) {
  if (value === null || typeof value !== "object") return out;
  if (type.startsWith("Array<")) {
    const inner = type.slice(6, -1);
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(index, v, inner, `${where}/${i}`, out));
    return out;
  }
  if (type.startsWith("{")) {
    for (const [k, v] of Object.entries(value)) unknownFields(index, v, type.slice(1), `${where}/${k}`, out);
    return out;
  }
  const fields = index.get(type);
  if (!fields || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value)) {
    if (!(k in fields)) out.push(`${where}/${k}`);
    else unknownFields(index, v, fields[k], `${where}/${k}`, out);
  }
  return out;
}

// apiVersion "apps/v1" -> kubernetes-models/apps/v1; core "v1" -> kubernetes-models/v1.
function modelOf(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  const parts = apiVersion.split("/");
  if (parts.length > 2 || parts.some((p) => !/^[a-z0-9.]+$/.test(p))) return null;
  try {
    const module = "kubernetes-models/" + parts.join("/") + "/" + kind;
    const Model = require(module)[kind];
    Model.declaration = "I" + kind + "@" + require.resolve(module).replace(/\.js$/, ".d.ts");
    return Model;
  } catch (e) {
    return null;
  }
}

const fieldIndex = loadFieldIndex();
let problems = 0;
let objects = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length) {
      console.log(`${file}: YAML: ${doc.errors[0].message}`);
      problems++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;
    objects++;
    const where = `${file}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const Model = modelOf(obj.apiVersion, obj.kind);
    if (!Model) {
      console.log(`${where}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
      problems++;
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}` +
        (x.params && x.params.additionalProperty ? ` (${x.params.additionalProperty})` : ""));
      console.log(`${where}: ${details.length ? details.join("; ") : e.message}`);
      problems++;
    }
    const unknown = unknownFields(fieldIndex, obj, Model.declaration, "", []);
    if (!fieldIndex.has(Model.declaration)) unknown.push("(no field list for " + obj.kind + ")");
    if (unknown.length) {
      console.log(`${where}: unknown field(s) ${unknown.join(", ")}`);
      problems++;
    }
  }
}
console.log(`${objects} object(s), ${problems} problem(s)`);
process.exit(problems || objects === 0 ? 1 : 0);
