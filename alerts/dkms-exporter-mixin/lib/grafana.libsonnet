// Grafana panel builders: plain objects in Grafana's JSON model (schemaVersion 39), a few
// dozen of them, so no dashboard library is vendored (docs/dashboard.md says why).
{
  DS:: { type: 'prometheus', uid: '${datasource}' },
  HIDDEN:: ['Time', '__name__', 'job'],

  target(expr, ref='A', legend='', table=false, instant=false):: {
    refId: ref,
    datasource: $.DS,
    expr: expr,
    range: !(table || instant),
    instant: table || instant,
    format: if table then 'table' else 'time_series',
    [if legend != '' then 'legendFormat']: legend,
  },

  // Value mappings: [[raw value, text, color], ...]
  mapping(values):: [{
    type: 'value',
    options: {
      [values[i][0]]: { text: values[i][1], color: values[i][2], index: i }
      for i in std.range(0, std.length(values) - 1)
    },
  }],

  thresholds(steps):: { mode: 'absolute', steps: [{ value: s[0], color: s[1] } for s in steps] },

  panel(kind, title, description, targets, extra={}):: {
    type: kind,
    title: title,
    description: description,
    datasource: $.DS,
    targets: targets,
  } + extra,

  stat(title, description, targets, mappings=[], thresholds=null, unit='none', noValue='',
       textMode='auto', colorMode='background'):: $.panel('stat', title, description, targets, {
    fieldConfig: {
      defaults: {
        unit: unit,
        mappings: mappings,
        thresholds: if thresholds == null then $.thresholds([[null, 'green']]) else thresholds,
        color: { mode: 'thresholds' },
        [if noValue != '' then 'noValue']: noValue,
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: colorMode,
      graphMode: 'none',
      textMode: textMode,
      justifyMode: 'auto',
      orientation: 'auto',
    },
  }),

  bargauge(title, description, expr, legend, noValue):: $.panel(
    'bargauge', title, description, [$.target(expr, legend=legend, instant=true)], {
      fieldConfig: {
        defaults: { unit: 'none', min: 0, noValue: noValue, thresholds: $.thresholds([[null, 'red']]),
                    color: { mode: 'thresholds' } },
        overrides: [],
      },
      options: {
        displayMode: 'basic',
        orientation: 'horizontal',
        showUnfilled: true,
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      },
    }
  ),

  // An instant table showing `columns` (labels, or `Value #X` renamed) in that order.
  table(title, description, targets, columns, rename={}, mappings=[], noValue='', merge=false,
        overrides=[]):: $.panel('table', title, description, targets, {
    transformations: (if merge then [{ id: 'merge', options: {} }] else []) + [{
      id: 'organize',
      options: {
        excludeByName: { [name]: true for name in $.HIDDEN if !std.member(columns, name) },
        indexByName: { [columns[i]]: i for i in std.range(0, std.length(columns) - 1) },
        renameByName: rename,
        includeByName: { [name]: true for name in columns },
      },
    }],
    fieldConfig: {
      defaults: {
        mappings: mappings,
        custom: { align: 'auto', cellOptions: { type: 'auto' } },
        [if noValue != '' then 'noValue']: noValue,
      },
      overrides: overrides,
    },
    options: { showHeader: true, cellHeight: 'sm', footer: { show: false } },
  }),

  // Kernel rows x module columns, one cell per series (empty: not needed on that kernel).
  matrix(title, description, expr, mappings):: $.panel('table', title, description, [$.target(expr, table=true)], {
    transformations: [{
      id: 'groupingToMatrix',
      options: { columnField: 'module', rowField: 'kernel', valueField: 'Value', emptyValue: 'empty' },
    }],
    fieldConfig: {
      defaults: {
        mappings: mappings,
        noValue: 'no modules needed',
        custom: { align: 'center', cellOptions: { type: 'color-background' } },
      },
      overrides: [],
    },
    options: { showHeader: true, cellHeight: 'sm', footer: { show: false } },
  }),

  timeseries(title, description, targets, unit='none', stack=false):: $.panel('timeseries', title, description, targets, {
    fieldConfig: {
      defaults: {
        unit: unit,
        min: 0,
        custom: {
          drawStyle: 'line',
          lineWidth: 1,
          fillOpacity: if stack then 20 else 0,
          stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
          spanNulls: false,
        },
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'table', placement: 'right', calcs: ['lastNotNull'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  }),

  // Layout items: a panel with its width and height, or a row.
  at(panel, w, h):: { panel: panel, w: w, h: h },
  row(title):: { row: title },

  // Places panels left to right in a 24-column grid, a new line when a row is full; a row
  // starts on a line of its own.  Ids count from 1 in that order.
  layout(items)::
    local newline(s) = s { y: s.y + s.lh, x: 0, lh: 0 };
    local add(s, panel, w, h) =
      local t = if s.x + w > 24 then newline(s) else s;
      t {
        panels: t.panels + [panel { id: t.id, gridPos: { x: t.x, y: t.y, w: w, h: h } }],
        id: t.id + 1,
        x: t.x + w,
        lh: std.max(t.lh, h),
      };
    local step(s, item) =
      if std.objectHas(item, 'row') then
        newline(add(if s.x != 0 then newline(s) else s,
                    { type: 'row', title: item.row, collapsed: false, panels: [] }, 24, 1))
      else add(s, item.panel, item.w, item.h);
    std.foldl(step, items, { x: 0, y: 0, lh: 0, id: 1, panels: [] }).panels,
}
