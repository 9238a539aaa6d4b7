"""The chapters' model cache (vae_course.tools.cache): a model is cached under its name and a hash
of its recipe, so the same recipe loads and a changed recipe trains again."""

import keras
import pytest

from vae_course.data import CACHE_ENV_VAR
from vae_course.models import build_vae
from vae_course.tools import course_models
from vae_course.tools.cache import cache_key, load_or_train, recipe_hash

HIDDEN = (8,)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    return tmp_path / "models"


def recipe(seed, width=4, verbose=0, trained=None):
    def train():
        keras.utils.set_random_seed(seed)
        vae = build_vae(latent_dim=2, image_shape=(4, 4), hidden_units=HIDDEN + (width,))
        if trained is not None:  # a dict: not plain data, so not part of the recipe's hash
            trained["runs"] = trained.get("runs", 0) + 1
        return vae

    return train


def recipe_other_literal(seed, verbose=0):
    def train():
        keras.utils.set_random_seed(seed)
        vae = build_vae(latent_dim=3, image_shape=(4, 4), hidden_units=HIDDEN)
        return vae

    return train


def recipe_other_layout(seed, verbose=0):
    def train():
        keras.utils.set_random_seed(seed)  # the same recipe, written on more lines
        vae = build_vae(
            latent_dim=2,
            image_shape=(4, 4),
            hidden_units=HIDDEN,
        )
        return vae

    return train


def test_the_hash_follows_the_recipe_not_its_layout_or_verbosity():
    base = recipe_hash(recipe(0))
    assert recipe_hash(recipe(0, verbose=2)) == base  # verbose does not change the model
    assert recipe_hash(recipe(1)) != base  # a value it closes over
    assert recipe_hash(recipe(0, width=6)) != base
    assert recipe_hash(recipe_other_literal(0)) != recipe_hash(
        recipe_other_layout(0)
    )  # a literal in its code
    assert recipe_hash(recipe_other_layout(0)) == recipe_hash(recipe_other_layout(0, verbose=1))


def test_a_module_constant_the_recipe_names_is_part_of_it(monkeypatch):
    base = recipe_hash(recipe(0))
    monkeypatch.setattr(__import__(__name__), "HIDDEN", (16,))
    assert recipe_hash(recipe(0)) != base


def test_same_recipe_loads_a_changed_one_trains_and_replaces_it(cache):
    trained = {}
    vae, loaded = load_or_train("toy", recipe(0, trained=trained))
    assert not loaded and trained["runs"] == 1
    again, loaded = load_or_train("toy", recipe(0, trained=trained))
    assert loaded and trained["runs"] == 1 and again.count_params() == vae.count_params()
    _, loaded = load_or_train("toy", recipe(0, width=6, trained=trained))
    assert not loaded and trained["runs"] == 2
    # the earlier recipe's file is replaced; another name's file is not touched
    load_or_train("toy_other", recipe(0))
    files = sorted(p.name for p in cache.iterdir())
    assert files == sorted(
        [
            cache_key("toy", recipe(0, width=6, trained={})) + ".keras",
            cache_key("toy_other", recipe(0)) + ".keras",
        ]
    )


def test_chapter_6_saves_where_get_chapter6_loads():
    recipes = []
    course_models.get_chapter6(
        0, verbose=2, cache=lambda name, train: recipes.append((name, train))
    )
    name, train = recipes[0]
    assert course_models.chapter6_model_path(0).name == cache_key(name, train) + ".keras"
    assert course_models.chapter6_model_path(0) != course_models.chapter6_model_path(1)
