def signal(*args):
    df = args[0]
    n = args[1]
    factor_name = args[2]
    diff = df["close"].diff()
    up = diff.clip(lower=0).rolling(n).mean()
    down = (-diff).clip(lower=0).rolling(n).mean()
    df[factor_name] = 100 * up / (up + down)
    return df
