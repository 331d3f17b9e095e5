"""Text in: default corpora, user files, tokenization and character classes."""
