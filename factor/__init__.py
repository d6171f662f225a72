"""The repository's ``factor`` package: BMAC's default factor package, as a user has one.

Factor modules added here are found by ``package='factor'`` (the default) before the bundled
ones, and ``factor.<Name>`` also reaches every module bundled in :mod:`bmac_kit.factors`
(this package's path is extended to it), so ``import factor.PctChg`` works in the repository.
The wheel does not install this package: a strategy's own ``factor/`` folder is its
``factor`` package, and the kit falls back to :mod:`bmac_kit.factors` for the rest.
"""

import bmac_kit.factors as _bundled

__path__ = [*__path__, *_bundled.__path__]
