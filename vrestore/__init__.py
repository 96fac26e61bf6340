"""The `vrestore` command line: a thin layer over pipeline/ and trainer/."""
