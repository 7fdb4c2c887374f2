"""PRISM: interaction experts, modality masking, interaction losses, adaptive fusion (PAPER.md §2).

Plugs into any backbone through the item-input seam (``prismrec.models.item_input``).
``prismrec.prism.config`` is torch-free; the modules are imported where used.
"""
