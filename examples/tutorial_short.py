"""The tutorial in short form: the seed problem, a short Adam training with BacksolveAdjoint, the
log-likelihood per datapoint before and after.

    python examples/tutorial_short.py [--steps 30] [--batch 100]

`harness reproduce` is the full run (1000 steps, B = 500, figures and a report).
"""

import argparse

import harness


def main(steps: int = 30, batch: int = 100) -> dict:
    problem = harness.build_problem("seed", batch=batch)
    run = harness.train(problem, steps=steps, lr=1e-2, engine="BacksolveAdjoint", rtol=1e-6, atol=1e-4,
                        log_every=10)
    first, last = run.history[0], run.history[-1]
    print(f"{problem.describe()}")
    print(f"log-likelihood per datapoint: step {first['step']}: {first['loglik_per_datapoint']:.4f}, "
          f"step {last['step']}: {last['loglik_per_datapoint']:.4f}")
    return {"first": first["loglik_per_datapoint"], "last": last["loglik_per_datapoint"], "theta": run.theta}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    main(args.steps, args.batch)
