"""One module per command (or per pair of close commands). Each parses its options, calls one library
function and renders the result; the commands are registered, and errors mapped to exit codes, in `cli.py`.
"""
