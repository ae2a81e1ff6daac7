"""`sfteval demo`: the whole loop offline, on a model the demo builds from nothing.

- `corpus`: the synthetic pretraining corpus and the demo's evaluation / SFT files.
- `pretrain`: a short plain causal-LM pretraining loop for the tiny base model.
- `pipeline`: the steps (corpus -> base model -> SFT -> runs -> sweep -> compare ->
  gate -> report) and the summary the command prints.

Importing this package is light: torch and transformers load inside functions.
"""
