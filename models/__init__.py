"""Models: the architecture zoo, model cards, the weight registry and prediction.

Import the submodules directly (``models.zoo``, ``models.registry``, ``models.predict``); this
package file stays empty so that importing one part does not load the others.
"""
