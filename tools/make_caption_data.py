"""Small made-up data sets for the recurrent models, as HDF5 files in Caffe's sequence layout.

  lstm_lm: sentences of a tiny grammar ("the big cat chases a bird", "a red dog sits on the
           mat"), packed back to back into N streams and cut into batches of T steps, as Caffe's
           coco_caption "unaligned" batches: a sentence may continue into the next batch (cont = 1
           at its step 0), so the LSTM's state carried between forward calls matters.
  lrcn:    12 x 12 images of one shape (square, cross or ring), small, medium or big, on the left
           or the right, each with its caption ("a big ring on the left"), one caption per stream
           starting at step 0 ("aligned" batches).

Layout (what HDF5Data reads, `batch_size` rows at a time):
  cont_sentence, input_sentence, target_sentence   (batches * T, N): rows b*T .. b*T+T-1 are
      batch b; column n is stream n. input is the previous word (0, the end-of-sentence mark,
      before a sentence's first word), target the word to predict (-1 = padding, ignored by
      SoftmaxWithLoss's ignore_label), cont 0 at a sentence's first step.
  data (batches * N, 1, 12, 12)                     (lrcn) the images of batch b, in stream order.

Each split is one .h5 file per data layer plus a list file naming it, written to
models/<model>/data/ by default (paths in the lists are as written: run from the repository root,
where the models' prototxts expect them):

    python tools/make_caption_data.py              # both models, into models/*/data/
    python tools/make_caption_data.py --out /tmp/d # elsewhere (then edit the prototxts' sources)
"""
import argparse
import os

import numpy as np

LM_WORDS = ["<eos>", "the", "a", "big", "small", "red", "cat", "dog", "bird", "fish", "mat",
            "chases", "sees", "likes", "sits", "on"]
LRCN_WORDS = ["<eos>", "a", "small", "big", "square", "cross", "ring", "on", "the", "left", "right"]
IMAGE_SIZE = 12
LM_SHAPE = dict(steps=10, streams=16)    # T and N of the lstm_lm prototxt
LRCN_SHAPE = dict(steps=8, streams=8)    # T and N of the lrcn prototxt


# -- the language model's corpus ---------------------------------------------------------------
def lm_sentence(rng):
    """Word ids of one sentence: the [adj] noun (verb | sits on) the [adj] noun."""
    def noun_phrase():
        words = [rng.choice(["the", "a"])]
        if rng.random() < 0.5:
            words.append(rng.choice(["big", "small", "red"]))
        return words + [rng.choice(["cat", "dog", "bird", "fish", "mat"])]

    verb = rng.choice(["chases", "sees", "likes", "sits"])
    words = noun_phrase() + ([verb, "on"] if verb == "sits" else [verb]) + noun_phrase()
    return [LM_WORDS.index(w) for w in words]


def unaligned_streams(rng, steps, streams, batches, sentence):
    """(cont, input, target) of shape (batches * steps, streams): sentences back to back."""
    length = batches * steps
    arrays = np.zeros((3, length, streams), np.float32)
    for n in range(streams):
        cont, inputs, targets = [], [], []
        while len(cont) < length:
            words = sentence(rng)
            cont += [0] + [1] * len(words)
            inputs += [0] + words
            targets += words + [0]
        arrays[:, :, n] = [cont[:length], inputs[:length], targets[:length]]
    return arrays


# -- the LRCN images and captions --------------------------------------------------------------
def draw(shape, size, side, rng):
    """A 1 x 12 x 12 image: faint noise and one shape (half-width 1, 2 or 3) at the left or right."""
    image = rng.uniform(0, 0.1, (IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    half = 1 + size
    cy = int(rng.integers(half, IMAGE_SIZE - half))
    cx = 3 if side == 0 else IMAGE_SIZE - 4
    rows, cols = slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1)
    if shape == 0:                      # square
        image[rows, cols] = 1
    elif shape == 1:                    # cross
        image[cy, cols] = 1
        image[rows, cx] = 1
    else:                               # ring
        image[rows, cols] = 1
        image[cy - half + 1:cy + half, cx - half + 1:cx + half] = 0.05
    return image[None]


def caption(shape, size, side):
    words = ["a"] + ([["small", None, "big"][size]] if size != 1 else [])
    words += [["square", "cross", "ring"][shape], "on", "the", ["left", "right"][side]]
    return [LRCN_WORDS.index(w) for w in words]


def aligned_captions(rng, steps, streams, batches):
    """Images (batches * streams, 1, 12, 12) and (cont, input, target) of shape
    (batches * steps, streams): stream n of batch b describes image b * streams + n."""
    images = np.zeros((batches * streams, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    sentences = np.zeros((3, batches * steps, streams), np.float32)
    sentences[1:] = [[[0]], [[-1]]]
    for b in range(batches):
        for n in range(streams):
            shape, size, side = int(rng.integers(3)), int(rng.integers(3)), int(rng.integers(2))
            images[b * streams + n] = draw(shape, size, side, rng)
            words = caption(shape, size, side)
            rows = slice(b * steps, b * steps + len(words) + 1)
            sentences[0, b * steps + 1:b * steps + steps, n] = 1
            sentences[1, rows, n] = [0] + words
            sentences[2, rows, n] = words + [0]
    return images, sentences


# -- writing -------------------------------------------------------------------------------------
def write_split(folder, name, datasets):
    """`folder/name.h5` holding `datasets` ({name: array}) and the list file `folder/name.txt`
    naming it; returns the list file's path."""
    import h5py  # noqa: PLC0415 - only needed here

    os.makedirs(folder, exist_ok=True)
    h5_path = os.path.join(folder, f"{name}.h5")
    with h5py.File(h5_path, "w") as handle:
        for key, array in datasets.items():
            handle.create_dataset(key, data=array)
    list_path = os.path.join(folder, f"{name}.txt")
    with open(list_path, "w", encoding="utf-8") as handle:
        handle.write(h5_path + "\n")
    return list_path


def sentence_datasets(arrays):
    return dict(zip(("cont_sentence", "input_sentence", "target_sentence"), arrays))


def write_lm_data(folder, batches=(60, 10), seed=0):
    """Train and test splits of the lstm_lm corpus: {split: list file}."""
    rng = np.random.default_rng(seed)
    return {split: write_split(folder, split, sentence_datasets(
                unaligned_streams(rng, batches=count, sentence=lm_sentence, **LM_SHAPE)))
            for split, count in zip(("train", "test"), batches)}


def write_lrcn_data(folder, batches=(60, 10), seed=1):
    """Train and test splits of the lrcn images and captions: {split: (images list, captions list)}."""
    rng = np.random.default_rng(seed)
    lists = {}
    for split, count in zip(("train", "test"), batches):
        images, sentences = aligned_captions(rng, batches=count, **LRCN_SHAPE)
        lists[split] = (write_split(folder, f"{split}_images", {"data": images}),
                        write_split(folder, f"{split}_captions", sentence_datasets(sentences)))
    return lists


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models", help="root folder (default: models)")
    args = parser.parse_args()
    for model, write in (("lstm_lm", write_lm_data), ("lrcn", write_lrcn_data)):
        lists = write(os.path.join(args.out, model, "data"))
        print(f"{model}: {lists}")


if __name__ == "__main__":
    main()
