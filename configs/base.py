"""Every key of a diffjax experiment, with its default. Article configs build on `get_config()`.

Keys that are `None` (typed placeholders) mean "the article's default": the builders pass on only the
knobs that are set, so a knob that does not apply to the chosen process, sampler or model is an error.
"""

from ml_collections import ConfigDict
from ml_collections.config_dict import placeholder


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0
    c.formulation = ""  # the article, for the record (e.g. "ddpm"); set by each article config

    # How data is destroyed: diffjax.process(name, **knobs).
    c.process = ConfigDict(dict(
        name="ddpm",
        num_steps=placeholder(int), schedule=placeholder(str), beta_start=placeholder(float),
        beta_end=placeholder(float), cosine_s=placeholder(float), max_beta=placeholder(float),
        beta_min=placeholder(float), beta_max=placeholder(float), t_eps=placeholder(float),
        sigma_min=placeholder(float), sigma_max=placeholder(float), t_end=placeholder(float),
        # UDM corruptions, articles (十)(十一): cold_blur, mask_pixels (udm_gaussian takes ddpm's knobs)
        kernel_size=placeholder(int), blur_std_start=placeholder(float), blur_std_step=placeholder(float),
        cold_noise_sigma=placeholder(float), mask_seed=placeholder(int),
        # token_mask, edit (None: the dataset's sequence length and vocabulary)
        seq_len=placeholder(int), vocab_size=placeholder(int), mask_token=placeholder(int),
        # pfgm, article (十三)
        M=placeholder(int), tau=placeholder(float), sigma_end=placeholder(float), gamma=placeholder(float),
        z_max=placeholder(float), z_min=placeholder(float), upper_norm=placeholder(float),
        lower_norm=placeholder(float), z_exp=placeholder(float), restrict_M=placeholder(bool),
        target=placeholder(str), large_batch=placeholder(int), small_batch=placeholder(int),
        time_input=placeholder(str),
        # green, article (十四)
        kernel=placeholder(str), T=placeholder(float), t_min=placeholder(float), prior_center=placeholder(float),
        psi=placeholder(str),
    ))

    # What the network outputs (eps | x0 | v | score | velocity).
    c.prediction = "eps"

    # What is regressed: diffjax.objective(name, process, prediction=..., **knobs).
    c.objective = ConfigDict(dict(
        name="eps_mse", reduction="mean", time_sampling=placeholder(str),
        sigma_type=placeholder(str), weighting=placeholder(str), precond=placeholder(str),
        sigma_data=placeholder(float), p_mean=placeholder(float), p_std=placeholder(float),
        t_min=placeholder(float), t_max=placeholder(float), logit_mean=placeholder(float),
        logit_std=placeholder(float),
        # non-Gaussian objectives: masked_ce/edit_ce, pfgm, udm_encoder, green_velocity
        positions=placeholder(str), chunk_size=placeholder(int), latent_norm=placeholder(bool),
        t_low=placeholder(float), t_high=placeholder(float),
    ))

    # How data is rebuilt: diffjax.sampler(name, **knobs).
    c.sampler = ConfigDict(dict(
        name="ancestral", steps=placeholder(int), spacing=placeholder(str), rho=placeholder(float),
        clip_x0=placeholder(bool), clip_final=placeholder(bool),
        noise_rng=placeholder(str),  # the Gaussian samplers' noise generator: pcg (default) | threefry
        # ancestral, ddim
        eta=placeholder(float), variance=placeholder(str), guidance=placeholder(str),
        # euler_maruyama / reverse_sde, pc
        sigma_rev=placeholder(float), predictor=placeholder(str), snr=placeholder(float),
        n_corrector=placeholder(int),
        # ode (diffrax)
        solver=placeholder(str), adaptive=placeholder(bool), rtol=placeholder(float), atol=placeholder(float),
        max_steps=placeholder(int),
        # heun / euler (EDM), dpm_solver
        S_churn=placeholder(float), S_tmin=placeholder(float), S_tmax=placeholder(float),
        S_noise=placeholder(float), variable=placeholder(str), method=placeholder(str),
        # untyped: an int for dpm_solver/heun (1, 2), a word for unmask (random, confidence)
        order=None,
        # udm (reverse: baseline | deterministic | mixed; sigma_tilde: a float or 'ddpm'), cold (method: naive |
        # improved), unmask, edit, pfgm/green_ode (solver, adaptive, rtol, atol, steps)
        reverse=placeholder(str), sigma_tilde=None, sample_x0=placeholder(str), unmask_per_step=placeholder(int),
        temperature=placeholder(float), select=placeholder(str), time_variable=placeholder(str),
    ))

    # Article (九): classifier-free guidance. p_uncond drops labels to the null class in training; cfg_scale
    # w samples with (1 + w) eps(x, y) - w eps(x, null). Both need model.class_conditional.
    # Classifier guidance: with classifier_scale gamma set, a noise-conditional classifier (section `classifier`)
    # is trained after the model in W/classifier, and sampling adds gamma grad log p(y | x_t, t): in eps-form for
    # every sampler, or as a mean shift with sampler.guidance='mean' (ancestral). classifier_input: x_t | x0_hat.
    c.guidance = ConfigDict(dict(p_uncond=0.0, cfg_scale=placeholder(float), classifier_scale=placeholder(float),
                                 classifier_input="x_t"))
    # The noisy classifier of classifier guidance: a residual MLP over the flattened x_t (None: the model's
    # training.num_steps and optimizer.learning_rate).
    c.classifier = ConfigDict(dict(hidden=256, depth=3, num_steps=placeholder(int), learning_rate=placeholder(float)))

    # Article (十七): reflow. After the main run, each of `rounds` rounds carries num_pairs prior draws to data
    # with the previous flow's ODE (solver: euler with ode_steps steps, or adaptive tsit5/dopri5), then trains the
    # next flow on those pairs from the previous weights for num_steps (None: training.num_steps), in W/reflow_<r>.
    c.reflow = ConfigDict(dict(rounds=0, num_pairs=4000, num_steps=placeholder(int), solver="tsit5", ode_steps=100))

    # Articles (七)(八): the x_0-variance table of sampler.variance='analytic', estimated once per checkpoint
    # with the trained model at the sampler's grid times and cached in W/variance/.
    # Article (八): sampler.variance='npr' or 'sn' trains a variance head of the model's architecture with the
    # model frozen, after the main run, in W/variance_head, for head_steps steps (None: training.num_steps).
    c.variance = ConfigDict(dict(estimator="eps_norm", num_samples=256, head_steps=placeholder(int)))

    # The network: diffjax.models.build_model(name, **preset, **knobs).
    c.model = ConfigDict(dict(
        name="unet", preset=placeholder(str), class_conditional=False,
        # MLP
        hidden=placeholder(int), depth=placeholder(int), time_embed_dim=placeholder(int), out_dim=placeholder(int),
        # Transformer (token data)
        vocab_size=placeholder(int), num_layers=placeholder(int), num_heads=placeholder(int), width=placeholder(int),
        mlp_ratio=placeholder(float),
        # U-Net
        out_channels=placeholder(int), ch=placeholder(int), ch_mult=placeholder(tuple), num_res_blocks=placeholder(int),
        attn_resolutions=placeholder(tuple), num_groups=placeholder(int), resamp_with_conv=placeholder(bool),
        skip_rescale=placeholder(bool),
        # both: dtype 'bfloat16' computes products in bf16 (parameters, norms and outputs stay float32)
        dtype=placeholder(str), dropout=placeholder(float), time_embedding=placeholder(str),
        time_scale=placeholder(float),
    ))

    # The data: diffjax.data.load_dataset(name, ...).
    c.data = ConfigDict(dict(name="digits", toy=placeholder(str), path=placeholder(str),
                             image_size=placeholder(int)))

    c.training = ConfigDict(dict(
        num_steps=10_000, batch_size=128, log_every=100, checkpoint_every=1000, keep_checkpoints=3,
        ema_decay=0.9999, ema_halflife_images=placeholder(float), skip_nonfinite=False,
        # > 0: cut each batch into this many shards whose gradients are added in a fixed order, so a run gives
        # bit-identical parameters on any device count dividing it (costs that many gradient copies at once).
        grad_shards=0,
        # Parameter sharding (docs/scaling.md): split every state leaf (params, EMA, optimizer moments) of at least
        # fsdp_min_size elements over `fsdp` devices, a divisor of the device count (1 = replicated); the mesh is
        # (devices / fsdp, fsdp) and the batch is split over all devices either way. May change on resume.
        fsdp=1, fsdp_min_size=2**16,
        # On a CPU host, the library of the train step's convolutions: "eigen" (XLA's own, faster on the CPUs
        # measured in bench/README.md) or "default" (XLA:CPU's default, YNNPACK); accelerators ignore it.
        cpu_convolutions="eigen",
        progress_bar=True,
    ))

    c.optimizer = ConfigDict(dict(
        name="adam", learning_rate=2e-4, warmup_steps=0, decay="constant", end_factor=0.1,
        weight_decay=0.0, grad_clip=1.0, b1=0.9, b2=0.999, eps=1e-8,
    ))

    # Sampling and evaluation at the end of training and from `diffjax sample|evaluate`.
    c.sampling = ConfigDict(dict(num_samples=1000, batch_size=500, use_ema=True))
    c.evaluation = ConfigDict(dict(num_reference=2000, classifier_path=placeholder(str),
                                   inception_path=placeholder(str)))
    return c


SCALES = ("toy2d", "digits", "cifar10", "celeba64")


def with_scale(c: ConfigDict, arg: str) -> ConfigDict:
    """Sets data, network and training for the data scale named in `arg` (`toy2d`, `digits`, `cifar10`,
    `celeba64`; default `digits`). Flags: `smoke` shrinks everything to seconds; `cpu` swaps the digits
    U-Net for a residual MLP over the flattened pixels, which learns recognisable digits in minutes on two
    CPU cores (XLA's CPU convolutions make the U-Net about 100x slower per step)."""
    from diffjax.config import parse_flags

    flags = parse_flags(arg or "digits", SCALES + ("smoke", "cpu"))
    scales = [f for f in flags if f in SCALES] or ["digits"]
    if len(scales) > 1:
        from diffjax.config import ConfigError

        raise ConfigError(f"choose one data scale, got {', '.join(sorted(scales))}")
    scale = scales[0]
    if scale == "toy2d":
        c.data.name, c.data.toy = "toy2d", "mixture"
        c.model.name, c.model.hidden, c.model.depth = "mlp", 256, 4
        # grad_shards: toy runs give bit-identical parameters on 1, 2, 4 or 8 devices (cheap with a small MLP).
        c.training.update(num_steps=20_000, batch_size=512, log_every=500, checkpoint_every=5000, ema_decay=0.999,
                          grad_shards=8)
        c.optimizer.update(learning_rate=1e-3, warmup_steps=500, decay="cosine")
        c.sampling.update(num_samples=4000, batch_size=4000)
    elif scale == "digits":
        c.data.name = "digits"
        c.model.name, c.model.preset = "unet", "digits"
        c.training.update(num_steps=20_000, batch_size=128, log_every=200, checkpoint_every=2000, ema_decay=0.999)
        c.optimizer.update(learning_rate=1e-3, warmup_steps=500, decay="cosine")
        c.sampler.clip_final = True
        c.sampling.update(num_samples=1000, batch_size=500)
    else:  # DDPM's CIFAR-10 recipe (Ho et al.): lr 2e-4, 5k warm-up, grad clip 1, EMA 0.9999, dropout 0.1.
        c.data.name = "cifar10" if scale == "cifar10" else "celeb_a"
        c.model.name, c.model.preset = "unet", "ddpm_cifar10"
        if scale == "celeba64":
            c.data.image_size = 64
        c.training.update(num_steps=800_000, batch_size=128, log_every=1000, checkpoint_every=10_000,
                          ema_decay=0.9999)
        c.optimizer.update(learning_rate=2e-4, warmup_steps=5000, grad_clip=1.0)
        c.sampler.clip_final = True
        c.sampling.update(num_samples=10_000, batch_size=500)
    if "cpu" in flags and scale == "digits":
        c.model.update(name="mlp", preset=None, hidden=512, depth=4)
        c.training.update(num_steps=6000, checkpoint_every=2000)
        c.optimizer.warmup_steps = 200
        c.sampling.update(num_samples=500, batch_size=500)
    if "smoke" in flags:
        c.training.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=1, progress_bar=False)
        c.optimizer.warmup_steps = 0
        c.sampling.update(num_samples=16, batch_size=16)
        c.evaluation.num_reference = 64
        if c.model.name == "unet":
            c.model.update(preset=None, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), num_groups=4,
                           dropout=0.0)
        else:
            c.model.update(hidden=32, depth=2)
        if c.process.name == "ddpm":
            c.process.num_steps = 20
        c.sampler.steps = min(c.sampler.steps, 5) if c.sampler.steps is not None else None
    return c
