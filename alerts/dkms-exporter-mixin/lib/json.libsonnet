// JSON text with two-space indentation, as people commit dashboards.  Not std.manifestJsonEx:
// jsonnet 0.18 (Debian's) runs it, and std.escapeStringJson, in jsonnet code that takes time
// quadratic in a string's length (20 s for the dashboard); std.toString escapes natively.
local scalar(v) =
  local j = std.toString([v]);
  std.substr(j, 1, std.length(j) - 2);

local value(v, pad) =
  if std.isObject(v) && std.length(v) > 0 then
    '{\n' + std.join(',\n', [pad + '  ' + scalar(k) + ': ' + value(v[k], pad + '  ') for k in std.objectFields(v)])
    + '\n' + pad + '}'
  else if std.isArray(v) && std.length(v) > 0 then
    '[\n' + std.join(',\n', [pad + '  ' + value(x, pad + '  ') for x in v]) + '\n' + pad + ']'
  else if std.isObject(v) then '{}'
  else if std.isArray(v) then '[]'
  else scalar(v);

{
  scalar(v):: scalar(v),
  // The JSON text of a value, without a final newline.
  manifest(v):: value(v, ''),
}
