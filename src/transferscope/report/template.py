"""The report's HTML: one Jinja2 template with autoescaping on (every value is escaped unless marked safe;
nothing here is marked safe). No scripts, no external resources: images are relative file names."""

from __future__ import annotations

import jinja2

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-top: .6em; }
nav a { margin-right: 1em; font-size: .9em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
caption { caption-side: bottom; text-align: left; font-size: .85em; color: #555; padding-top: .3em; }
figure { margin: .8em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: .4em .7em; margin: .5em 0; }
.note { font-size: .85em; color: #444; }
.verdict-holds { color: #186a1a; font-weight: 600; } .verdict-does-not-hold { color: #a51d1d; font-weight: 600; }
.verdict-inconclusive { color: #9a6700; font-weight: 600; } .verdict-not-measured { color: #666; }
.verdict-unreliable { color: #6a3d9a; font-weight: 600; }
.tint-holds { background: #e8f4e8; } .tint-does-not-hold { background: #f8e6e6; }
.tint-inconclusive { background: #fbf3e0; } .tint-unreliable { background: #efe8f5; }
.tint-not-measured { background: #f2f2f2; }
details > summary { cursor: pointer; font-size: .9em; color: #333; margin: .6em 0; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="note">Rendered {{ generated }} from the results folder <code>{{ root }}</code> by transferscope.
Every figure says what was measured and over how many seeds.</p>
<nav>{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% if s.intro %}<p>{{ s.intro }}</p>{% endif %}
{% for it in s.items %}
{% if it.kind == "figure" %}
<figure><img src="{{ it.file }}" alt="{{ it.caption }}"><figcaption>{{ it.caption }}
{%- if it.links %} (also as {% for fmt, f in it.links %}<a href="{{ f }}">{{ fmt }}</a>
{{- ", " if not loop.last }}{% endfor %}){% endif %}</figcaption></figure>
{% elif it.kind == "table" %}
{% if it.fold %}<details><summary>{{ it.caption }} ({{ it.rows|length }} rows; click to open)</summary>{% endif %}
<table>
{% if it.caption %}<caption>{{ it.caption }}</caption>{% endif %}
<thead><tr>{% for h in it.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in it.rows %}<tr{% if it.tints[loop.index0] %} class="tint-{{ it.tints[loop.index0] }}"{% endif %}>{% for c in row %}
{% if c is string and c in outcomes %}<td class="verdict-{{ c|replace(' ', '-') }}">{{ c }}</td>
{% else %}<td>{{ c }}</td>{% endif %}
{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% if it.fold %}</details>{% endif %}
{% elif it.kind == "missing" %}
<p class="missing">Missing: {{ it.text }}</p>
{% else %}
<p class="note">{{ it.text }}</p>
{% endif %}
{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_html(**context) -> str:
    return _ENV.from_string(_TEMPLATE).render(**context)
