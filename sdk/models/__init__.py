"""Model families.  ``edgevos.models.registry`` is torch-free; the family modules need torch."""
