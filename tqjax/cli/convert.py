"""``tqjax convert SOURCE OUT_DIR``: import a Hugging Face folder or a llama.cpp ``.gguf`` file once,
save a tqjax checkpoint (params, config and tokenizer)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from tqjax.cli.options import checked, dtype_name

    p = sub.add_parser("convert", help="convert a Hugging Face folder or a .gguf file to a tqjax checkpoint")
    p.add_argument("hf_dir", metavar="source", help="a Hugging Face folder or a llama.cpp .gguf file")
    p.add_argument("out_dir")
    p.add_argument("--dtype", default=None, help="cast weights (e.g. bfloat16); default keeps the stored dtype "
                   "(float32 for a .gguf file, which is dequantised)", **checked(dtype_name))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    import tqjax

    model = tqjax.load(args.hf_dir, dtype=args.dtype)
    tqjax.save(model, args.out_dir, overwrite=args.overwrite)
    c = model.config
    print(f"converted {args.hf_dir} -> {args.out_dir}: {c.arch} {c.kind}, {c.n_layers} layers, d={c.d_model}, vocab={c.vocab_size}")
    return 0
