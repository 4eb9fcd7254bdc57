"""``vllmgen bundle``: a whole deployment (images, model, the rendered tree) carried to hosts without
internet, and ``vllmgen bundle load`` placing it there. ``archive`` is the format, ``contents`` what
goes in, ``make`` writes a bundle, ``load`` places one."""
