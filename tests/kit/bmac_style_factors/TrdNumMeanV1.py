def signal(*args):
    # mean trade count over n candles
    df = args[0]
    n = args[1]
    factor_name = args[2]
    df[factor_name] = df["trade_num"].rolling(n).mean()
    return df
