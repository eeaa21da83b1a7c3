// A YAML writer for the committed rule files: keys in a fixed, readable order (jsonnet
// objects have none: std.manifestYamlDoc sorts them) and PromQL as literal blocks
// (std.manifestYamlDoc of jsonnet 0.18 escapes it onto one line, and is slow).  Every other
// string is bare when it is one plain word, else a JSON string (YAML reads it as the same
// double-quoted scalar).
// tests/test_mixin.py checks that PyYAML reads each file back as the value jsonnet had.
local all(xs) = std.foldl(function(acc, x) acc && x, xs, true);

local order = [
  'apiVersion', 'kind', 'metadata', 'name', 'alert', 'record', 'expr', 'for', 'labels',
  'annotations', 'summary', 'description', 'fix', 'report_url', 'runbook_url', 'reason_url', 'spec', 'groups',
  'rules', 'data',
];

// std.format ('%03d') is slow in jsonnet 0.18: ranks are precomputed.
local ranks = { [order[i]]: std.toString(100 + i) for i in std.range(0, std.length(order) - 1) };
local rank(key) = if std.objectHas(ranks, key) then ranks[key] else '999' + key;

local sortedKeys(obj) = std.sort(std.objectFields(obj), rank);

local quote = (import 'json.libsonnet').scalar;

// A key (or a one-word value) is written bare when YAML reads it back as the same string.
local plain = { [c]: true for c in std.stringChars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-') };
local letters = { [c]: true for c in std.stringChars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ') };
// YAML 1.1 (PyYAML) reads these as booleans or null.
local reserved = { [w]: true for w in std.flattenArrays([[w, std.asciiUpper(w[0]) + w[1:], std.asciiUpper(w)]
                                                          for w in ['true', 'false', 'null', 'yes', 'no', 'on', 'off']]) };
local bare(k) =
  if std.length(k) > 0 && std.length(k) <= 64 && std.length(std.split(k, ' ')) == 1
     && std.objectHas(letters, k[0]) && !std.objectHas(reserved, k)
     && all([std.objectHas(plain, c) for c in std.stringChars(k)])
  then k else quote(k);
local key(k) = bare(k);

// A string can be a literal block when it has several lines, none with trailing blanks or
// tabs, the first not indented (YAML would take its indentation as the block's), and at most
// one final newline (`|` keeps one, `|-` none).
local blockable(s) =
  local body = if std.endsWith(s, '\n') then std.substr(s, 0, std.length(s) - 1) else s;
  local lines = std.split(body, '\n');
  std.length(lines) > 1
  && !std.endsWith(body, '\n')
  && !std.startsWith(lines[0], ' ')
  && std.length(std.split(s, '\t')) == 1
  && all([!std.endsWith(l, ' ') for l in lines]);

local scalar(v, pad) =
  if std.isString(v) then
    if blockable(v) then
      local body = if std.endsWith(v, '\n') then std.substr(v, 0, std.length(v) - 1) else v;
      (if std.endsWith(v, '\n') then '|' else '|-')
      + std.join('', ['\n' + (if l == '' then '' else pad + l) for l in std.split(body, '\n')])
    else bare(v)
  else if v == null then 'null'
  else quote(v);


local isEmpty(v) = (std.isObject(v) || std.isArray(v)) && std.length(v) == 0;

// `node` under a key (or list item) at indentation `pad`: what follows "key:".
local value(v, pad) =
  if std.isObject(v) && !isEmpty(v) then '\n' + object(v, pad)
  else if std.isArray(v) && !isEmpty(v) then '\n' + array(v, pad)
  else if isEmpty(v) then ' ' + (if std.isObject(v) then '{}' else '[]')
  else ' ' + scalar(v, pad),

object(obj, pad) = std.join('\n', [
  pad + key(k) + ':' + value(obj[k], pad + '  ')
  for k in sortedKeys(obj)
]),

array(arr, pad) = std.join('\n', [
  local item = arr[i];
  if std.isObject(item) && !isEmpty(item) then
    // "- first: ..." then the other keys aligned under it
    local o = object(item, pad + '  ');
    pad + '- ' + std.substr(o, std.length(pad) + 2, std.length(o))
  else pad + '-' + value(item, pad + '  ')
  for i in std.range(0, std.length(arr) - 1)
]);

{
  // The YAML document for a value whose top level is an object, without the final newline
  // (`jsonnet -S -m` adds one to every file).
  manifest(obj):: object(obj, ''),
}
