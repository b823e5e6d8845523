"""Report: what a run shows, as one view model (`view`) rendered for the terminal, Markdown and HTML.

`contents` finds what a directory holds, `charts` draws the PNGs, `render` lays the view model out (rich,
and the Jinja2 templates in `templates/`), and `build.build_report` writes the report with its manifest.
Import the modules themselves: the compare stage renders through `render`, and `build` reads what the
compare stage wrote.
"""
