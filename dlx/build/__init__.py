"""Names -> Keras objects (one resolver); entries, blocks and graphs -> keras.Model."""
