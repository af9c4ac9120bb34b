"""The Typer CLI: parse, call one library function, render."""
