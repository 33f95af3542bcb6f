"""People's own text through the model: `python -m apps.predict` (JSON lines, a terminal view, an HTML
page) and `python -m apps.demo` (a page on 127.0.0.1), both on `engine.Engine` with a runner from
`engine.backends`."""
