"""Integrations with model libraries, each switched on by the program that imports it, never by a file:
`import tmodel.integrations.transformers`, `.timm`, `.torchvision`. Each registers its library's models
under stable names (`transformers.GPT2LMHeadModel`, `timm.resnet18`, `torchvision.resnet18`), the same for
every user, and a file using one records the library's version in its metadata (`tmodel.libraries`).
"""
