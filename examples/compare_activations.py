"""The seed articles' experiment: one small MLP trained once per activation, same seed and schedule.

    python examples/compare_activations.py                       # 8 activations, bundled 8x8 digits
    python examples/compare_activations.py --mnist ~/data/mnist  # 784-16-10 as in the articles
    python examples/compare_activations.py --activations relu swish --spec serf.toml --plot curves.png

Every option of `actgen compare` works here (this script is that command); `--help` lists them.
The same from Python:

    import actgen
    from actgen.compare import Config, load_digits_dataset, train
    data = load_digits_dataset()
    result = train(actgen.load("swish"), data, Config(hidden=32, epochs=30, batch_size=32, lr=0.05))
    print(result.test_accuracy, result.kernel_seconds)
"""

import sys

from actgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
