"""What the tests share, apart from the test modules: drivers, stand-in servers, generated media and the
tiny GGUF models. Kept in one package so that a test module never imports another and bench/support.py
borrows from one place (`python -m tests.support.gguf_models OUTDIR` writes the models by hand)."""
