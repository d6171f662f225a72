def signal(*args):
    # PctChg: n-candle return, the way BMAC users write it
    df = args[0]
    n = args[1]
    factor_name = args[2]
    df[factor_name] = df["close"].pct_change(n)
    return df
