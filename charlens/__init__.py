"""charlens: train a tiny character-level transformer, then find out what each attention head does.

Layers, each importing only those below it: charlens.data <- charlens.model <- charlens.analysis.measures
<- charlens.training / charlens.analysis.runs <- charlens.analysis.report <- the CLIs (charlens.train,
charlens.analyze, started through charlens.cli)."""
