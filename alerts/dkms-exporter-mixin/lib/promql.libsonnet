// PromQL text helpers: the expressions read like hand-written rules (one clause a line).
{
  indent(text, n):: std.join('\n', [std.repeat(' ', n) + l for l in std.split(text, '\n')]),

  // `(expr)` over several lines, the body indented two more than the parentheses.
  paren(expr, outer=0):: '(\n' + self.indent(expr, outer + 2) + '\n' + std.repeat(' ', outer) + ')',

  alternatives(values):: std.join('|', values),

  // `metric{<selector>, matchers...}`
  sel(selector, metric, matchers=[]):: metric + '{' + std.join(', ', [selector] + matchers) + '}',
}
